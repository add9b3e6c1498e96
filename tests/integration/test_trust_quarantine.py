"""Issue 11, point 1: a Kubernetes Deployment claimed by two accounts is billed to nobody and shown.
Issue 21, point 6: whichever path found its pods (owner chain or label) and its volumes (label).

On main the owner-chain lookup took the newest registration (``ORDER BY created_at DESC LIMIT 1``)
and billed it silently; docs/rules/ingestion.md requires quarantine until a person resolves it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import psycopg
import pytest

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


# --- issue 21, point 6: the label path is quarantined too, through real Prometheus and the cycle ---


def _labelled_double_claim_cluster():
    """acct-a's labelled Deployment ns-a/web (a pod and a labelled PVC) is also claimed by a row of
    acct-b; acct-b's own labelled Deployment ns-b/api is the control that is billed."""
    from devkit.synthetic import GIB, Account, Cluster, Container, Deployment, Pod, Pvc

    app = Container("app", cpu_cores=0.5, cpu_request=1.0, memory_bytes=GIB, memory_request=GIB)
    return Cluster(
        start=CYCLE_START,
        minutes=120,
        pod_cgroup_series=False,
        accounts=(Account("acct-a", "A"), Account("acct-b", "B")),
        deployments=(
            Deployment("dep-a-web", "acct-a", "ns-a", "web"),  # pods carry satusky.io/deployment-id
            Deployment("dep-b-api", "acct-b", "ns-b", "api"),
        ),
        pods=(Pod("web-1", "dep-a-web", "node-1", (app,)), Pod("api-1", "dep-b-api", "node-1", (app,))),
        pvcs=(Pvc("ns-a", "web-data", 10 * GIB, deployment_id="dep-a-web"),),
    )


CYCLE_START = datetime(2025, 3, 3, tzinfo=UTC)


@pytest.mark.prometheus
@pytest.mark.slow
def test_a_labelled_deployment_claimed_by_two_accounts_posts_nothing_and_is_listed(db_url, tmp_path, monkeypatch):
    from billing_pipeline.orchestration import cycle
    from devkit.synthetic import PrometheusServer, build_tsdb, write_platform_rows
    from tests.support import dbt as d
    from tests.support.payments import set_balance

    cluster = _labelled_double_claim_cluster()
    with psycopg.connect(db_url) as conn:
        write_platform_rows(conn, cluster)
        # The second claim: acct-b registers the same Kubernetes Deployment ns-a/web.
        conn.execute(
            "INSERT INTO billing.deployments (id, account_id, namespace, name, created_at) "
            "VALUES ('dep-b-web-dup', 'acct-b', 'ns-a', 'web', %s)",
            (CYCLE_START,),
        )
    for pid, resource, unit, price, basis in (
        ("cpu", "cpu", "core_hour", "0.04", "max_request_usage"),
        ("mem", "memory", "gib_hour", "0.005", "usage"),
        ("sto", "storage", "gib_hour", "0.0002", "usage"),
        ("egr", "network_egress", "gib", "0.08", "usage"),
    ):
        d.add_price(db_url, pid, resource, unit, price, basis=basis)
    for account in ("acct-a", "acct-b"):
        set_balance(db_url, account, Decimal(100), f"opening-{account}")
    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with PrometheusServer(build_tsdb(cluster, tmp_path / "tsdb")).start() as prometheus:
        monkeypatch.setenv("PROMETHEUS_URL", prometheus.url)
        result = cycle.run_billing_window(
            CYCLE_START, CYCLE_START + timedelta(hours=2), now=CYCLE_START + timedelta(hours=3)
        )
    with psycopg.connect(db_url) as conn:
        deducted = dict(
            conn.execute(
                "SELECT account_id, sum(amount) FROM billing.credit_transactions "
                "WHERE type = 'usage_deduction' GROUP BY account_id"
            ).fetchall()
        )
        # The labelled pod and PVC of the doubly-claimed Deployment are billed to nobody ...
        assert "acct-a" not in deducted
        rows = conn.execute(
            "SELECT 'container', deployment_id, account_id, attribution, attribution_note "
            "FROM billing.metric_container_hours WHERE namespace = 'ns-a' "
            "UNION ALL SELECT 'volume', deployment_id, account_id, attribution, attribution_note "
            "FROM billing.metric_volume_hours WHERE namespace = 'ns-a'"
        ).fetchall()
        assert {r[0] for r in rows} == {"container", "volume"} and len(rows) == 4  # two hours each
        for _, deployment, account, attribution, note in rows:
            assert (deployment, account, attribution) == (None, None, "unattributed")
            assert note.startswith("quarantined: label satusky.io/deployment-id=dep-a-web names Deployment ns-a/web")
            assert "dep-a-web (account acct-a)" in note and "dep-b-web-dup (account acct-b)" in note
        # ... while the control Deployment of acct-b is billed: 2 h x (1 core x 0.04 + 1 GiB x 0.005).
        assert deducted == {"acct-b": Decimal("-0.09")}
    # ... and `billing run` lists the claim as quarantined.
    quarantined = result.summary["quarantined"]
    assert [(q["table"], q["id"]) for q in quarantined] == [("deployments", "ns-a/web")]
