"""README promises of the lifecycle that no other test pinned down: objects labelled for another
account, protected namespaces and dry-run set through the environment, and what early idle
deletion must not delete. Against the validating Kubernetes API emulator over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import psycopg
import pytest

from billing_pipeline.definitions import defs
from billing_pipeline.resources.cluster import ACCOUNT_ID_LABEL, DEPLOYMENT_ID_LABEL
from tests.support.kube import (
    add_deployment,
    cluster,
    events,
    kube,
    run,
    seed_deployment,
    set_account,
    set_balance,
)
from tests.support.platform import create_accounts

T0 = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)


def _state(url, account):
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT state FROM billing.account_lifecycle WHERE account_id = %s", (account,)).fetchone()[
            0
        ]


def _writes(kube) -> list[tuple[str, str, str, str]]:
    """Every call that changed (or tried to change) the cluster: (method, kind, namespace, name)."""
    return [(c.method, c.kind, c.namespace, c.name) for c in kube.calls if c.method != "GET"]


# --- never touching an object labelled for another account -------------------------------------


def test_expiry_never_touches_objects_labelled_for_another_account(db_url, kube, cluster):
    create_accounts(db_url, "acme", "beta")
    set_account(db_url, "acme", grace_period_hours=1)
    add_deployment(db_url, "dep-web", "acme", "acme-prod", "web", hosts=["web.acme.test"])
    seed_deployment(kube, "acme-prod", "web", "dep-web", "acme", host="web.acme.test")
    # In acme's own namespace: objects carrying acme's deployment id but beta's account label
    # (someone else's, mislabelled or planted), and an object named like the deployment (the
    # legacy name fallback would match it) that beta's label claims.
    foreign = {"satusky.io/deployment-id": "dep-web", ACCOUNT_ID_LABEL: "beta"}
    kube.put("ConfigMap", "acme-prod", "beta-config", labels=foreign, data={"A": "1"})
    kube.put("Secret", "acme-prod", "beta-secret", labels=foreign, data={"K": "dg=="})
    kube.put(
        "PersistentVolumeClaim",
        "acme-prod",
        "beta-data",
        labels=foreign,
        spec={"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    )
    add_deployment(db_url, "dep-job", "acme", "acme-prod", "job")
    kube.put("ConfigMap", "acme-prod", "job", labels={ACCOUNT_ID_LABEL: "beta"}, data={"B": "2"})
    beta_objects = {
        ("ConfigMap", "acme-prod", "beta-config"),
        ("Secret", "acme-prod", "beta-secret"),
        ("PersistentVolumeClaim", "acme-prod", "beta-data"),
        ("ConfigMap", "acme-prod", "job"),
    }
    before = {o: kube.get(*o) for o in beta_objects}

    set_balance(db_url, "acme", -3)
    assert run(db_url, cluster, T0).errors == []
    assert run(db_url, cluster, T0 + timedelta(hours=1)).errors == []
    assert _state(db_url, "acme") == "expired"
    # acme's own objects are gone: the cleanup did run ...
    assert (
        kube.get("Deployment", "acme-prod", "web") is None and kube.get("ConfigMap", "acme-prod", "web-config") is None
    )
    # ... and beta's are untouched, byte for byte, and were never the target of a write.
    assert {o: kube.get(*o) for o in beta_objects} == before
    assert [w for w in _writes(kube) if (w[1], w[2], w[3]) in beta_objects] == []
    assert [e for e in events(db_url) if (e["target"] or {}).get("name") in {o[2] for o in beta_objects}] == []


# --- protected namespaces and dry-run through the environment ------------------------------------


def _env_cluster(kube, monkeypatch, **env):
    """The cluster as the Definitions' own resource builds it, with only the environment set."""
    monkeypatch.setenv("KUBECONFIG", str(kube.kubeconfig_path))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    resource = defs.resources["kubernetes"]
    return resource.cluster(), resource.is_dry_run()


def test_protected_namespaces_from_the_environment_are_never_touched(db_url, kube, monkeypatch):
    cluster, dry_run = _env_cluster(kube, monkeypatch, BILLING_PROTECTED_NAMESPACES="shared-infra, platform-ops")
    assert not dry_run and {"shared-infra", "platform-ops", "kube-system"} <= cluster.protected
    create_accounts(db_url, "acme")
    set_account(db_url, "acme", grace_period_hours=1)
    add_deployment(db_url, "dep-web", "acme", "shared-infra", "web", hosts=["web.acme.test"])
    seed_deployment(kube, "shared-infra", "web", "dep-web", "acme", host="web.acme.test")
    before = kube.objects()
    set_balance(db_url, "acme", -3)
    first = run(db_url, cluster, T0, dry_run=dry_run)
    expired = run(db_url, cluster, T0 + timedelta(hours=1), dry_run=dry_run)
    # Every action in the protected namespace was refused, naming it; nothing was sent to it.
    assert any("protected namespace 'shared-infra'" in e for e in first.errors + expired.errors)
    assert kube.objects() == before and [c for c in kube.calls if c.namespace == "shared-infra"] == []


@pytest.mark.parametrize("value", ["1", "true"])
def test_dry_run_from_the_environment_records_and_changes_nothing(db_url, kube, monkeypatch, value):
    cluster, dry_run = _env_cluster(kube, monkeypatch, BILLING_LIFECYCLE_DRY_RUN=value)
    assert dry_run is True
    create_accounts(db_url, "acme")
    add_deployment(db_url, "dep-web", "acme", "acme-prod", "web", hosts=["web.acme.test"])
    seed_deployment(kube, "acme-prod", "web", "dep-web", "acme", host="web.acme.test")
    before = {o: kube.get(*o) for o in kube.objects()}
    set_balance(db_url, "acme", -3)
    assert run(db_url, cluster, T0, dry_run=dry_run).errors == []
    # Recorded what it would do, each as a dry_run event ...
    would = {(e["kind"], e["action"], e["outcome"]) for e in events(db_url, "acme")}
    assert would == {
        ("dry_run", a, "would_do")
        for a in ("transition", "domains_suspended", "grace_period", "create_suspension_service", "suspend_ingress")
    }
    # ... and changed nothing: no state, no domain, no notice, no write sent to the cluster.
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM billing.account_lifecycle").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM billing.notification_outbox").fetchone()[0] == 0
        assert conn.execute("SELECT status FROM billing.domains").fetchall() == [("active",)]
    assert {o: kube.get(*o) for o in kube.objects()} == before and _writes(kube) == []


# --- early idle deletion: what must not be deleted ----------------------------------------------


def _idle_setup(
    db_url, kube, *, complete_hours=24, created=T0 - timedelta(days=3), egress_gib="0", early_idle_deletion=True
):
    """acme with one deployment that used no CPU over the 24 hours before T0, in grace unless told."""
    create_accounts(db_url, "acme")
    set_account(db_url, "acme", early_idle_deletion=early_idle_deletion)
    add_deployment(db_url, "dep-idle", "acme", "acme-prod", "cron", created_at=created)
    seed_deployment(kube, "acme-prod", "cron", "dep-idle", "acme")
    with psycopg.connect(db_url) as conn:
        for h in range(24):
            hour = T0 - timedelta(hours=24 - h)
            conn.execute(
                "INSERT INTO billing.metric_hours (hour, complete) VALUES (%s, %s)", (hour, h < complete_hours)
            )
            conn.execute(
                "INSERT INTO billing.metric_container_hours (hour, namespace, pod, container, deployment_id, "
                "account_id, attribution, present_minutes, cpu_usage_core_hours) VALUES "
                "(%s, 'acme-prod', 'cron-1', 'app', 'dep-idle', 'acme', 'label', 60, 0.0001)",
                (hour,),
            )
        conn.execute(
            "INSERT INTO billing.metric_pod_network_hours (hour, namespace, pod, node, deployment_id, account_id, "
            "attribution, egress_gib) VALUES (%s, 'acme-prod', 'cron-1', 'n1', 'dep-idle', 'acme', 'label', %s)",
            (T0 - timedelta(hours=3), egress_gib),
        )


def _idle_deleted(db_url, kube) -> bool:
    deleted = kube.get("Deployment", "acme-prod", "cron") is None
    recorded = any(e["action"] == "early_idle_deletion" for e in events(db_url, "acme"))
    assert deleted == recorded
    return deleted


def test_idle_deletion_positive_control(db_url, kube, cluster):
    """The setup the negative cases vary does delete: each of them fails for its own reason."""
    _idle_setup(db_url, kube)
    set_balance(db_url, "acme", -1)
    assert run(db_url, cluster, T0 + timedelta(minutes=10)).errors == []
    assert _state(db_url, "acme") == "grace_period" and _idle_deleted(db_url, kube)


@pytest.mark.parametrize(
    "case, setup, balance",
    [
        ("an hour of the window not ingested complete", {"complete_hours": 23}, -1),
        ("created inside the window", {"created": T0 - timedelta(hours=5)}, -1),
        ("idle CPU but egress at the threshold", {"egress_gib": "0.001"}, -1),
        ("early idle deletion off for the account", {"early_idle_deletion": False}, -1),
        ("low balance, not in grace", {}, 5),
    ],
)
def test_idle_deletion_leaves_alone(db_url, kube, cluster, case, setup, balance):
    _idle_setup(db_url, kube, **setup)
    set_balance(db_url, "acme", balance)
    assert run(db_url, cluster, T0 + timedelta(minutes=10)).errors == []
    assert _state(db_url, "acme") == ("grace_period" if balance < 0 else "low_balance")
    assert not _idle_deleted(db_url, kube), case
    assert kube.successful("DELETE") == []
