"""Issue 24: a catch-up in one pass equals the same hours run one by one, to the micro-credit.

One small cluster (three accounts, three hours: a steady pod, a pod that starts and stops inside
the window with egress, a counter reset, a volume, a rental that covers part of the usage) is
served by one real Prometheus. Two databases run the whole hourly cycle (ingestion, dbt, the
settlement, top-ups, lifecycle, alerts) through Dagster with the same clock:

* ``ranged``: the three hours as one ranged run (one dbt build, one ledger batch; Prometheus
  answers range queries with a one-hour step: the first hour alone, as the database has never
  ingested and learns the series count from it, then the other two in one query each);
* ``hourly``: the same three hours as three runs of one hour each.

The ledger entries (account, type, amount, idempotency key, reference, balance after) and the
fct marts that hold money or usage are equal row for row, and acct-a's charge is the figure
computed by hand.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from billing_pipeline.db.connection import connect
from billing_pipeline.orchestration import cycle
from devkit.synthetic import (
    GIB,
    MIB,
    Account,
    Cluster,
    Container,
    Deployment,
    Pod,
    PrometheusServer,
    Pvc,
    Rental,
    build_tsdb,
)
from tests.support import dbt as d
from tests.support.cycle import ledger_differs_from_charges, load_priced_platform

pytestmark = pytest.mark.prometheus

H = timedelta(hours=1)
START = datetime(2025, 5, 6, 8, tzinfo=UTC)
HOURS = 3
END = START + HOURS * H
NOW = END + timedelta(minutes=20)

# The money and usage marts: every column but those that say when a row was built (``*_at``).
MARTS = ["fct_priced_usage", "fct_usage_charges", "fct_usage_reconciliation"]
METRICS = {
    "metric_container_hours": "hour, namespace, pod, container, node, deployment_id, account_id, attribution, "
    "present_minutes, cpu_usage_core_hours, cpu_request_core_hours, memory_usage_gib_hours, "
    "memory_request_gib_hours, gpu_request_hours",
    "metric_pod_network_hours": "hour, namespace, pod, deployment_id, egress_gib",
    "metric_volume_hours": "hour, namespace, persistentvolumeclaim, deployment_id, storage_gib_hours",
    "metric_hours": "hour, complete, problems, series",
}


def cluster() -> Cluster:
    steady = Container("app", cpu_cores=0.5, cpu_request=1.0, memory_bytes=GIB, memory_request=GIB)
    return Cluster(
        start=START,
        minutes=HOURS * 60,
        pod_cgroup_series=False,
        accounts=(Account("acct-a", "A"), Account("acct-b", "B"), Account("acct-c", "C")),
        deployments=(
            Deployment("dep-a", "acct-a", "ns-a", "web"),
            Deployment("dep-b", "acct-b", "ns-b", "api"),
            Deployment("dep-c", "acct-c", "ns-c", "worker"),
        ),
        pods=(
            Pod("pa1", "dep-a", "shared-1", (steady,)),
            Pod("pb1", "dep-b", "rented-node", (Container("app", cpu_cores=2.0, memory_bytes=2 * GIB),)),
            Pod(
                "pb2",
                "dep-b",
                "shared-1",
                (Container("app", cpu_cores=0.25, cpu_request=0.5, memory_bytes=512 * MIB),),
                start_minute=90,
                stop_minute=170,
                egress_bytes_per_minute=50 * MIB,
            ),
            Pod(
                "pc1",
                "dep-c",
                "shared-2",
                (Container("main", cpu_cores=1.5, memory_bytes=3 * GIB, restart_minutes=(130,)),),
            ),
        ),
        pvcs=(Pvc("ns-c", "data", 20 * GIB, deployment_id="dep-c"),),
        rentals=(
            Rental("rent-b", "acct-b", "m-1", "standard-8", "rented-node", START + 30 * H / 60, START + 150 * H / 60),
        ),
    )


@pytest.fixture(scope="module")
def both(databases, tmp_path_factory):
    """The three hours run ranged into one database and hour by hour into another."""
    base = tmp_path_factory.mktemp("catch_up")
    platform = cluster()
    server = PrometheusServer(build_tsdb(platform, base / "tsdb")).start()
    urls = {}
    try:
        for name, windows in (
            ("ranged", [(START, END)]),
            ("hourly", [(START + i * H, START + (i + 1) * H) for i in range(HOURS)]),
        ):
            url = urls[name] = databases.new()
            home = base / f"dagster_home_{name}"
            home.mkdir()
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("BILLING_DATABASE_URL", url)
                mp.setenv("PROMETHEUS_URL", server.url)
                mp.setenv("DAGSTER_HOME", str(home))
                load_priced_platform(url, platform, opening="100")
                for start, end in windows:
                    result = cycle.run_billing_window(start, end, NOW)
                    assert [r.status for r in result.runs] == ["SUCCESS"] and result.problems == [], result.problems
                    assert len(result.hours) == (end - start) // H
        yield urls
    finally:
        server.stop()


def ledger(url: str) -> list[tuple]:
    return d.query(
        url,
        "SELECT account_id, type, amount, balance_after, idempotency_key, reference::text "
        "FROM billing.credit_transactions ORDER BY idempotency_key",
    )


def test_a_ranged_run_posts_the_same_ledger_as_hourly_runs(both):
    ranged, hourly = ledger(both["ranged"]), ledger(both["hourly"])
    deductions = [row for row in ranged if row[1] == "usage_deduction"]
    assert len(deductions) >= HOURS * 3  # every account charged every hour, at least one kind each
    assert ranged == hourly
    assert ledger_differs_from_charges(both["ranged"]) == []
    # acct-a: max(request 1, usage 0.5) = 1 core-hour x 0.04 + 1 GiB-hour x 0.005 = 0.045 an hour.
    charged_a = d.query(
        both["ranged"],
        "SELECT -sum(amount) FROM billing.credit_transactions WHERE account_id = 'acct-a' AND type = 'usage_deduction'",
    )
    assert charged_a == [(Decimal("0.135000"),)]


def columns(url: str, table: str) -> list[str]:
    rows = d.query(
        url,
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'analytics' AND table_name = %s "
        "AND column_name NOT LIKE '%%\\_at' ORDER BY ordinal_position",
        (table,),
    )
    return [name for (name,) in rows]


@pytest.mark.parametrize("mart", MARTS)
def test_a_ranged_run_builds_the_same_marts_as_hourly_runs(both, mart):
    names = columns(both["ranged"], mart)
    assert "hour" in names and "account_id" in names
    listed = ", ".join(f'"{n}"' for n in names)
    query = f"SELECT {listed} FROM analytics.{mart} ORDER BY {listed}"
    ranged, hourly = d.query(both["ranged"], query), d.query(both["hourly"], query)
    assert ranged and {row[names.index("hour")] for row in ranged} <= {START + i * H for i in range(HOURS)}
    assert ranged == hourly


@pytest.mark.parametrize("table", sorted(METRICS))
def test_a_ranged_run_ingests_the_same_rows_as_hourly_runs(both, table):
    query = f"SELECT {METRICS[table]} FROM billing.{table} ORDER BY {METRICS[table]}"
    with connect(both["ranged"]) as conn:
        ranged = conn.execute(query).fetchall()
    with connect(both["hourly"]) as conn:
        hourly = conn.execute(query).fetchall()
    assert ranged and {row[0] for row in ranged} == {START + i * H for i in range(HOURS)}
    assert ranged == hourly
