"""Issue 11, point 1: a Kubernetes Deployment claimed by two accounts is billed to nobody and shown.

On main the owner-chain lookup took the newest registration (``ORDER BY created_at DESC LIMIT 1``)
and billed it silently; docs/rules/ingestion.md requires quarantine until a person resolves it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timezone

import psycopg

from billing_pipeline.ingestion.metrics import FetchedHour, quarantined_deployments, write_hour
from tests.support.platform import create_accounts

HOUR = datetime(2026, 11, 24, 10, tzinfo=UTC)


def _fetched() -> FetchedHour:
    """One hour of a pod without the deployment-id label, owned by ReplicaSet -> Deployment acme/worker."""
    fetched = FetchedHour(hour=HOUR, prometheus_url="http://prometheus.test")
    fetched.containers[("acme", "worker-5d9-abc", "app")] = {
        "cpu_increase": "1800",
        "memory_sum": str(60 * 2**30),
        "usage_minutes": "60",
        "request_cpu": "60",
        "request_memory": str(60 * 2**30),
        "request_minutes": "60",
    }
    fetched.pods[("acme", "worker-5d9-abc")] = {
        "nodes": {"node-1": 60},
        "label": None,
        "owner": "worker-5d9",
        "egress": "0",
    }
    fetched.replicasets[("acme", "worker-5d9")] = "worker"
    return fetched


def _attribution(conn) -> tuple:
    return conn.execute(
        "SELECT deployment_id, account_id, attribution, attribution_note "
        "FROM billing.metric_container_hours WHERE hour = %s",
        (HOUR,),
    ).fetchone()


def test_a_deployment_claimed_by_two_accounts_is_quarantined_not_billed_to_the_newest(db_url):
    create_accounts(db_url, "acme", "globex")
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO billing.deployments (id, account_id, namespace, name, created_at) VALUES "
            "('dep-acme-worker', 'acme', 'acme', 'worker', '2026-11-01'), "
            "('dep-globex-worker-dup', 'globex', 'acme', 'worker', '2026-11-20')"
        )
        conn.commit()
        summary = write_hour(conn, _fetched())
        deployment, account, attribution, note = _attribution(conn)
        assert (deployment, account, attribution) == (None, None, "unattributed")  # billed to nobody
        assert note.startswith("quarantined:") and "dep-acme-worker (account acme)" in note
        assert "dep-globex-worker-dup (account globex)" in note
        assert summary.quarantined_pods == 1
        shown = quarantined_deployments(conn)
        assert [q["deployment"] for q in shown] == ["acme/worker"]
        assert {c["account_id"] for c in shown[0]["row"]["claims"]} == {"acme", "globex"}

        # A person resolves it: the wrong claim is deleted; the hour run again bills the owner.
        conn.execute("UPDATE billing.deployments SET deleted_at = '2026-11-21' WHERE id = 'dep-globex-worker-dup'")
        conn.commit()
        summary = write_hour(conn, _fetched())
        assert _attribution(conn)[:3] == ("dep-acme-worker", "acme", "owner_chain")
        assert summary.quarantined_pods == 0 and quarantined_deployments(conn) == []


def test_two_claims_of_one_account_are_not_a_conflict(db_url):
    create_accounts(db_url, "acme")
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO billing.deployments (id, account_id, namespace, name, created_at) VALUES "
            "('dep-old', 'acme', 'acme', 'worker', '2026-11-01'), "
            "('dep-new', 'acme', 'acme', 'worker', '2026-11-20')"
        )
        conn.commit()
        write_hour(conn, _fetched())
        assert _attribution(conn)[1:3] == ("acme", "owner_chain")
        assert quarantined_deployments(conn) == []
