"""Kubernetes emulator fixtures and platform rows for the lifecycle tests."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import psycopg
import pytest

from billing_pipeline.resources.cluster import ACCOUNT_ID_LABEL, DEPLOYMENT_ID_LABEL
from billing_pipeline.resources.kubernetes import KubernetesResource
from devkit.emulators.kube_emulator import KubeEmulator


@pytest.fixture
def kube(tmp_path):
    """A running emulator (127.0.0.1, free port), stopped after the test."""
    with KubeEmulator() as emulator:
        emulator.kubeconfig_path = emulator.write_kubeconfig(tmp_path / "kubeconfig")
        yield emulator


@pytest.fixture
def cluster(kube):
    """The lifecycle's ``Cluster``, through the official client, over HTTP to the emulator."""
    return KubernetesResource(kubeconfig=str(kube.kubeconfig_path), protected_namespaces="platform-ops").cluster()


def labels(deployment_id: str, account_id: str) -> dict[str, str]:
    return {DEPLOYMENT_ID_LABEL: deployment_id, ACCOUNT_ID_LABEL: account_id}


def ingress_spec(host: str, service: str) -> dict:
    return {
        "ingressClassName": "nginx",
        "tls": [{"hosts": [host], "secretName": f"{service}-tls"}],
        "rules": [
            {
                "host": host,
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": service, "port": {"number": 80}}},
                        },
                        {
                            "path": "/api",
                            "pathType": "ImplementationSpecific",
                            "backend": {"service": {"name": service, "port": {"name": "http"}}},
                        },
                    ]
                },
            }
        ],
    }


def seed_deployment(
    kube: KubeEmulator,
    ns: str,
    name: str,
    dep_id: str | None,
    account_id: str | None,
    *,
    host: str = "app.example.test",
    pvcs: dict[str, str] | None = None,
) -> None:
    """The objects the platform creates for one deployment (labelled unless ``dep_id`` is None)."""
    lab = labels(dep_id, account_id) if dep_id else {}
    kube.put(
        "Deployment",
        ns,
        name,
        labels=lab,
        spec={
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "x"}]},
            },
        },
    )
    kube.put("Service", ns, name, labels=lab, spec={"ports": [{"port": 80}]})
    kube.put("Ingress", ns, name, labels=lab, spec=ingress_spec(host, name))
    kube.put("ConfigMap", ns, f"{name}-config", labels=lab, data={"A": "1"})
    kube.put("Secret", ns, f"{name}-secret", labels=lab, data={"K": "dg=="})
    for pvc, size in (pvcs or {}).items():
        kube.put(
            "PersistentVolumeClaim",
            ns,
            pvc,
            labels=lab,
            spec={"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}},
        )


def add_deployment(
    url: str, dep_id: str, account_id: str, ns: str, name: str, *, hosts=(), created_at: datetime | None = None
) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO billing.deployments (id, account_id, namespace, name, created_at) "
            "VALUES (%s, %s, %s, %s, coalesce(%s, now()))",
            (dep_id, account_id, ns, name, created_at),
        )
        for h in hosts:
            conn.execute("INSERT INTO billing.domains (hostname, deployment_id) VALUES (%s, %s)", (h, dep_id))


def set_account(url: str, account_id: str, **fields) -> None:
    with psycopg.connect(url) as conn:
        for k, v in fields.items():
            conn.execute(f"UPDATE billing.accounts SET {k} = %s WHERE id = %s", (v, account_id))


def domain_status(url: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute("SELECT hostname, status FROM billing.domains").fetchall())


def events(url: str, account_id: str | None = None) -> list[dict]:
    with psycopg.connect(url) as conn:
        cur = conn.execute(
            "SELECT event_key, kind, action, outcome, target, detail, deployment_id FROM "
            "billing.lifecycle_events WHERE %s::text IS NULL OR account_id = %s ORDER BY id",
            (account_id, account_id),
        )
        cols = [c.name for c in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]


def set_balance(url: str, account_id: str, target: Decimal | str | int) -> None:
    """Move the account's balance to ``target`` with one admin adjustment through the ledger."""
    import uuid

    from billing_pipeline.ledger import Entry, EntryType, balance_of, post_entry

    with psycopg.connect(url) as conn:
        delta = Decimal(target) - balance_of(conn, account_id)
        if delta != 0:
            post_entry(
                conn,
                Entry(
                    account_id,
                    EntryType.ADMIN_ADJUSTMENT,
                    delta,
                    f"test:{uuid.uuid4()}",
                    reason="test balance",
                    actor="tests",
                ),
            )


def run(url: str, cluster, now: datetime, **kw):
    """One lifecycle evaluation of every account at ``now``."""
    from billing_pipeline.lifecycle.engine import run_lifecycle

    with psycopg.connect(url, autocommit=True) as conn:
        return run_lifecycle(conn, cluster, now, **kw)


def outbox(url: str, account_id: str) -> list[tuple[str, str, str, str]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT kind, dedupe_key, subject, body FROM billing.notification_outbox WHERE account_id = %s ORDER BY id",
            (account_id,),
        ).fetchall()


def run_in_child(url: str, kubeconfig: str, now: datetime, account_ids: list[str]):
    """One lifecycle evaluation in a separate process (forked, so it starts at once), to be SIGKILLed."""
    import multiprocessing

    process = multiprocessing.get_context("fork").Process(target=_child, args=(url, kubeconfig, now, account_ids))
    process.start()
    return process


def _child(url: str, kubeconfig: str, now: datetime, account_ids: list[str]) -> None:
    import os

    code = 1
    try:
        cluster = KubernetesResource(kubeconfig=kubeconfig).cluster()
        code = 0 if run(url, cluster, now, account_ids=account_ids).errors == [] else 1
    finally:
        os._exit(code)  # never run the parent's (pytest's) exit handlers


def wait_until_held(kube: KubeEmulator, process, timeout: float = 60.0):
    """The write the emulator holds for ``process``, or None if the process ended without reaching it."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        held = kube.wait_paused(0.05)
        if held is not None:
            return held
        if not process.is_alive():
            return kube.wait_paused(0.2)
    raise AssertionError("the child neither reached the held write nor ended")
