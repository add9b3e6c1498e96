"""A demo account going through grace to expiry against the Kubernetes API emulator.

``run_lifecycle_demo(db_url)`` creates the account ``demo-lifecycle`` (if absent) with one
deployment and its objects in the emulator, drains its balance, and runs the lifecycle at a
few clock points: low balance, grace (routing removed, domains suspended, notice queued),
a top-up that restores routing exactly, grace again, and expiry (everything deleted). It
returns printable lines. Safe to call again: each call uses fresh deployment ids.
"""

from __future__ import annotations

import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from billing_pipeline.db.connection import connect
from billing_pipeline.ledger import Entry, EntryType, balance_of, post_entry
from billing_pipeline.lifecycle.engine import run_lifecycle
from billing_pipeline.lifecycle.report import lifecycle_status
from billing_pipeline.lifecycle.store import fmt_time
from billing_pipeline.resources.cluster import ACCOUNT_ID_LABEL, DEPLOYMENT_ID_LABEL, Cluster
from devkit.emulators.kube_emulator import KubeEmulator

ACCOUNT = "demo-lifecycle"
NAMESPACE = "demo-shop"


def _set_balance(conn, target: Decimal, why: str) -> None:
    delta = target - balance_of(conn, ACCOUNT)
    if delta:
        post_entry(
            conn,
            Entry(
                ACCOUNT, EntryType.ADMIN_ADJUSTMENT, delta, f"demo-lifecycle:{uuid.uuid4()}", reason=why, actor="demo"
            ),
        )


def run_lifecycle_demo(
    db_url: str, *, start: datetime | None = None, grace_period_hours: int = 72, emulator: KubeEmulator | None = None
) -> list[str]:
    """Run the scenario and return what happened, line by line."""
    start = (start or datetime(2026, 11, 25, 14, 0, tzinfo=UTC)).astimezone(UTC)
    own = emulator is None
    kube = emulator or KubeEmulator().start()
    lines: list[str] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            import kubernetes

            api = kubernetes.config.new_client_from_config(
                config_file=str(kube.write_kubeconfig(Path(tmp) / "kubeconfig"))
            )
            cluster = Cluster(api)
            suffix = uuid.uuid4().hex[:6]
            dep_id, name, host = f"dep-shop-{suffix}", f"shop-{suffix}", f"shop-{suffix}.demo.test"
            labels = {DEPLOYMENT_ID_LABEL: dep_id, ACCOUNT_ID_LABEL: ACCOUNT}
            with connect(db_url) as conn:
                conn.execute(
                    "INSERT INTO billing.accounts (id, name, email, low_balance_threshold, grace_period_hours) "
                    "VALUES (%s, 'Demo Shop', 'ops@demo.test', 10, %s) ON CONFLICT (id) DO UPDATE SET "
                    "grace_period_hours = excluded.grace_period_hours",
                    (ACCOUNT, grace_period_hours),
                )
                conn.execute(
                    "INSERT INTO billing.deployments (id, account_id, namespace, name) VALUES (%s, %s, %s, %s)",
                    (dep_id, ACCOUNT, NAMESPACE, name),
                )
                conn.execute("INSERT INTO billing.domains (hostname, deployment_id) VALUES (%s, %s)", (host, dep_id))
            rules = [
                {
                    "host": host,
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": name, "port": {"number": 80}}},
                            }
                        ]
                    },
                }
            ]
            kube.put(
                "Deployment",
                NAMESPACE,
                name,
                labels=labels,
                spec={
                    "replicas": 2,
                    "selector": {"matchLabels": {"app": name}},
                    "template": {
                        "metadata": {"labels": {"app": name}},
                        "spec": {"containers": [{"name": "shop", "image": "demo/shop:1"}]},
                    },
                },
            )
            kube.put("Service", NAMESPACE, name, labels=labels, spec={"ports": [{"port": 80}]})
            original = kube.put("Ingress", NAMESPACE, name, labels=labels, spec={"rules": rules})["spec"]
            kube.put("ConfigMap", NAMESPACE, f"{name}-config", labels=labels, data={"MODE": "prod"})
            kube.put("Secret", NAMESPACE, f"{name}-db", labels=labels, data={"PASSWORD": "c2VjcmV0"})
            kube.put(
                "PersistentVolumeClaim",
                NAMESPACE,
                f"data-{name}-0",
                labels=labels,
                spec={"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "20Gi"}}},
            )
            kube.put("ConfigMap", "kube-system", f"{name}-config", labels=labels)  # never touched
            lines.append(
                f"Lifecycle demo: account {ACCOUNT}, deployment {NAMESPACE}/{name} ({dep_id}), "
                f"Kubernetes API emulator at {kube.url}"
            )

            def step(now: datetime, balance: Decimal | None, what: str) -> None:
                with connect(db_url) as conn:
                    if balance is not None:
                        _set_balance(conn, balance, what)
                with connect(db_url, autocommit=True) as conn:
                    report = run_lifecycle(conn, cluster, now, account_ids=[ACCOUNT])
                    status = lifecycle_status(conn, ACCOUNT, now)
                acc = report.accounts[0]
                lines.append(
                    f"[{fmt_time(now)}] {what}: state {acc.state}"
                    + (f", deadline {fmt_time(status['grace_deadline'])}" if status["grace_deadline"] else "")
                )
                for t in acc.transitions:
                    lines.append(f"    transition {t.from_state.value} -> {t.to_state.value}: {t.reason}")
                for a in acc.actions:
                    lines.append(f"    cluster: {a}")
                if acc.error:
                    lines.append(f"    ERROR: {acc.error}")
                ingress = kube.get("Ingress", NAMESPACE, name)
                backend = (
                    None
                    if ingress is None
                    else ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"]
                )
                lines.append(
                    "    ingress backend: "
                    + (
                        "(deleted)"
                        if ingress is None
                        else "the deployment's Service"
                        if backend == name
                        else f"suspension page (Service {backend})"
                    )
                )
                for item in status["deployments"] + status["volumes"]:
                    if dep_id == item.get("deployment_id"):
                        lines.append(f"    status: {item['text']}")

            step(start, Decimal("4"), "balance down to 4 credits")
            step(start + timedelta(hours=1), Decimal("-1.5"), "balance used up (-1.5)")
            step(start + timedelta(hours=2), Decimal("25"), "top-up of 26.5 credits")
            restored = kube.get("Ingress", NAMESPACE, name)["spec"] == original
            lines.append(f"    ingress rules restored identically: {'yes' if restored else 'NO'}")
            step(start + timedelta(hours=3), Decimal("-2"), "balance used up again (-2)")
            step(start + timedelta(hours=3 + grace_period_hours), None, "grace deadline reached, no top-up")
            left = sorted(f"{k} {ns}/{n}" for k, ns, n in kube.objects() if name in n)
            lines.append(
                "Objects left for this deployment: "
                + (", ".join(left) or "none")
                + " (the kube-system ConfigMap of the same name is never touched)"
            )
            with connect(db_url) as conn:
                n_events = conn.execute(
                    "SELECT count(*) FROM billing.lifecycle_events WHERE account_id = %s "
                    "AND (deployment_id = %s OR deployment_id IS NULL)",
                    (ACCOUNT, dep_id),
                ).fetchone()[0]
                notices = [
                    r[0]
                    for r in conn.execute(
                        "SELECT subject FROM billing.notification_outbox WHERE account_id = %s ORDER BY id", (ACCOUNT,)
                    )
                ]
            lines.append(f"{n_events} lifecycle events recorded; notices queued: " + "; ".join(notices))
    finally:
        if own:
            kube.stop()
    return lines
