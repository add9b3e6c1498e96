"""A month close on the real path: hours that went through Prometheus ingestion and a real dbt
build, then `close-month` (SLA credits, then invoices) on the dbt-built ``fct_priced_usage``.

The last five hours of October 2026 of a small synthetic cluster (every minute probed) go through
the whole hourly cycle (`run_billing_window`: ingestion, probes, dbt, settlement, top-ups,
lifecycle, alerts); then `run_month_end` closes October with a clock after the month. The figures
are computed here from the cluster's description (docs/rules/pricing.md, month-end.md):

* acct-a, dep-a on a shared node: cpu max(request 1, usage 0.5) = 1 core-hour x 0.04 and 1 GiB x
  0.005 per hour: 0.045 x 5 = 0.225. Probe down in 3 of 300 minutes: availability exactly 0.99,
  not below 99 %, below 99.9 %: 10 % -> credit 0.0225.
* acct-b, dep-b on the node acct-b rents from 21:00: charged at 19:00 and 20:00 (0.04 + 2 GiB x
  0.005 = 0.05 an hour), covered (0) from 21:00: base 0.10. Down in 15 of 300 minutes:
  availability exactly 0.95, not below 95 %: 25 % -> credit 0.025. The rental is 3 machine-hours x
  0.90 = 2.70 (a machine_rental line, not in the SLA base).

Each availability sits exactly on a tier's threshold, so a tier compared with ``<=`` instead of
``<`` (docs/rules/month-end.md: "strictly below") fails here too. The last test holds every
stand-in mart of ``tests/support/`` against the mart dbt built here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

import psycopg
import pytest

from billing_pipeline.db.connection import connect
from billing_pipeline.orchestration import cycle
from billing_pipeline.orchestration.month_end import run_month_end
from devkit.clock import posted_at
from devkit.synthetic import (
    GIB,
    Account,
    Cluster,
    Container,
    Deployment,
    Pod,
    PrometheusServer,
    Rental,
    build_tsdb,
    write_platform_rows,
)
from tests.support import dbt as d
from tests.support.contracts import STAND_INS, stand_in_ddl
from tests.support.cycle import ledger_differs_from_charges, load_priced_platform

pytestmark = pytest.mark.prometheus

D = Decimal
H = timedelta(hours=1)
START = datetime(2026, 10, 31, 19, tzinfo=UTC)
HOURS = 5
END = START + HOURS * H  # 2026-11-01 00:00: the month's end
CYCLE_NOW = END + timedelta(minutes=30)
CLOSE_NOW = "2026-11-01T06:00:00+00:00"
MICRO = D("0.000001")


def last_hours_of_october() -> Cluster:
    app = dict(cpu_cores=0.5, cpu_request=1.0, memory_request=GIB)
    return Cluster(
        start=START,
        minutes=HOURS * 60,
        pod_cgroup_series=False,
        accounts=(Account("acct-a", "A"), Account("acct-b", "B")),
        deployments=(
            Deployment("dep-a", "acct-a", "ns-a", "web", probed=True, probe_down=((10, 13),)),
            Deployment("dep-b", "acct-b", "ns-b", "api", probed=True, probe_down=((100, 115),)),
        ),
        pods=(
            Pod("pa1", "dep-a", "shared-1", (Container("app", memory_bytes=GIB, **app),)),
            Pod("pb1", "dep-b", "rented-node", (Container("app", memory_bytes=2 * GIB, **app),)),
        ),
        rentals=(Rental("rent-b", "acct-b", "m-1", "standard-8", "rented-node", START + 2 * H, END),),
    )


@pytest.fixture(scope="module")
def closed(databases, tmp_path_factory):
    """The cycle over the five hours, then October closed; yields the database's URL."""
    base = tmp_path_factory.mktemp("real_path")
    url = databases.new()
    cluster = last_hours_of_october()
    server = PrometheusServer(build_tsdb(cluster, base / "tsdb")).start()
    home = base / "dagster_home"
    home.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BILLING_DATABASE_URL", url)
        mp.setenv("PROMETHEUS_URL", server.url)
        mp.setenv("DAGSTER_HOME", str(home))
        try:
            with connect(url) as conn:
                write_platform_rows(conn, cluster)
            # Prices from January 2025 and an opening top-up of 100 credits each (tests/support/cycle.py),
            # posted an hour before the usage it pays for: it counts in October whatever today's date.
            with posted_at(START - H):
                load_priced_platform(url, cluster, opening="100")
            result = cycle.run_billing_window(START, END, CYCLE_NOW)
            assert [r.status for r in result.runs] == ["SUCCESS"] and result.problems == [], result.problems
            # Only October's last five hours ran: the rest is unsettled, so the close is forced.
            summary = run_month_end("2026-10", CLOSE_NOW, force=True)
            yield url, summary
        finally:
            server.stop()


def test_the_cycle_priced_what_the_cluster_ran(closed):
    url, _ = closed
    priced = {
        (a, k, r, c): amount
        for a, k, r, c, amount in d.query(
            url,
            "SELECT account_id, usage_kind, resource, coverage, sum(amount) FROM analytics.fct_priced_usage "
            "GROUP BY 1, 2, 3, 4",
        )
    }
    assert priced == {
        ("acct-a", "workload_consumption", "cpu", "charged"): D("0.20"),
        ("acct-a", "workload_consumption", "memory", "charged"): D("0.025"),
        ("acct-b", "workload_consumption", "cpu", "charged"): D("0.08"),
        ("acct-b", "workload_consumption", "memory", "charged"): D("0.02"),
        ("acct-b", "workload_consumption", "cpu", "covered_by_rental"): D(0),
        ("acct-b", "workload_consumption", "memory", "covered_by_rental"): D(0),
        ("acct-b", "machine_rental", "machine", "rental"): D("2.70"),
    }
    probes = d.query(
        url,
        "SELECT deployment_id, sum(measured_minutes), sum(down_minutes) FROM billing.probe_deployment_hours "
        "GROUP BY 1 ORDER BY 1",
    )
    assert probes == [("dep-a", 300, 3), ("dep-b", 300, 15)]
    assert ledger_differs_from_charges(url) == []


def test_sla_credits_follow_the_probes_and_the_dbt_built_consumption(closed):
    url, summary = closed
    assert summary["sla_credits_posted"] == 2 and summary["invoices_issued"] == 2
    measurements = d.query(
        url,
        "SELECT deployment_id, existed_minutes, eligible_minutes, measured_minutes, down_minutes, unmeasured_minutes, "
        "availability, tier_id, credit_share, base_amount, credit_amount, outcome FROM billing.sla_measurements "
        "ORDER BY deployment_id",
    )
    assert measurements == [
        ("dep-a", 300, 300, 300, 3, 0, D("0.99"), "below_99_9", D("0.10"), D("0.225"), D("0.0225"), "credit"),
        ("dep-b", 300, 300, 300, 15, 0, D("0.95"), "below_99", D("0.25"), D("0.10"), D("0.025"), "credit"),
    ]
    credits = d.query(
        url,
        "SELECT account_id, amount, idempotency_key, reference->>'tier' FROM billing.credit_transactions "
        "WHERE type = 'sla_credit' ORDER BY account_id",
    )
    assert credits == [
        ("acct-a", D("0.0225"), "sla:dep-a:2026-10", "below_99_9"),
        ("acct-b", D("0.025"), "sla:dep-b:2026-10", "below_99"),
    ]


def _period(type_: str, reference: dict, created_at: datetime) -> str:
    """billing.ledger_entry_period (docs/rules/month-end.md), restated."""
    if type_ in ("usage_deduction", "reversal") and "usage_kind" in reference:
        return reference["hour"][:7]
    if type_ == "sla_credit":
        return reference["month"]
    return f"{created_at.astimezone(UTC):%Y-%m}"


def test_invoice_lines_are_the_ledger_and_the_bill(closed):
    url, _ = closed
    with psycopg.connect(url) as conn:
        entries = {
            i: (a, t, amount, _period(t, ref, at))
            for i, a, t, amount, ref, at in conn.execute(
                "SELECT id, account_id, type, amount, reference, created_at FROM billing.credit_transactions"
            )
        }
        invoices = conn.execute(
            "SELECT id, account_id, number, opening_balance, total, closing_balance FROM billing.invoices "
            "WHERE period_month = '2026-10-01' ORDER BY number"
        ).fetchall()
        lines = conn.execute(
            "SELECT i.account_id, l.line_type, l.usage_kind, l.amount, l.ledger_entry_ids FROM billing.invoice_lines l "
            "JOIN billing.invoices i ON i.id = l.invoice_id ORDER BY i.account_id, l.line_no"
        ).fetchall()
        invoiced = {r[0] for r in conn.execute("SELECT ledger_entry_id FROM billing.invoice_entries")}
    assert [(a, n) for _, a, n, *_ in invoices] == [("acct-a", 1), ("acct-b", 2)]
    # Every entry of period <= October is on the invoice, once; the line amounts are their exact sums.
    assert invoiced == {i for i, e in entries.items() if e[3] <= "2026-10"}
    for account, _type, _kind, amount, ids in lines:
        assert all(entries[i][0] == account for i in ids) and amount == sum(entries[i][2] for i in ids)
    for _id, account, _n, opening, total, closing in invoices:
        assert opening == 0 and total == sum(e[2] for i, e in entries.items() if i in invoiced and e[0] == account)
        assert closing == opening + total
    # The lines are the opening top-up and the bill computed from the cluster.
    billed = sorted((a, t, k, amount) for a, t, k, amount, _ in lines)
    assert billed == [
        ("acct-a", "sla_credit", None, D("0.0225")),
        ("acct-a", "topup", None, D("100")),
        ("acct-a", "usage", "workload_consumption", D("-0.225")),
        ("acct-b", "sla_credit", None, D("0.025")),
        ("acct-b", "topup", None, D("100")),
        ("acct-b", "usage", "machine_rental", D("-2.70")),
        ("acct-b", "usage", "workload_consumption", D("-0.10")),
    ]
    # And they equal the dbt-built marts, rounded half-even per hour and kind.
    charges = d.query(
        url,
        "SELECT account_id, usage_kind, sum(amount) FROM analytics.fct_usage_charges GROUP BY 1, 2 ORDER BY 1, 2",
    )
    usage = sorted((a, k, -amount) for a, t, k, amount, _ in lines if t == "usage")
    assert usage == [(a, k, v.quantize(MICRO, rounding=ROUND_HALF_EVEN)) for a, k, v in charges]


def _columns(url: str, schema: str, table: str) -> list[tuple]:
    return d.query(
        url,
        "SELECT column_name, format_type(a.atttypid, a.atttypmod), a.attnotnull "
        "FROM information_schema.columns c "
        "JOIN pg_attribute a ON a.attrelid = format('%%I.%%I', c.table_schema, c.table_name)::regclass "
        "AND a.attname = c.column_name "
        "WHERE c.table_schema = %s AND c.table_name = %s ORDER BY c.ordinal_position",
        (schema, table),
    )


def test_every_stand_in_mart_is_the_mart_dbt_builds(closed):
    url, _ = closed
    with psycopg.connect(url) as conn:
        for model in STAND_INS:
            conn.execute(stand_in_ddl(model, schema="standin"))
    for model in STAND_INS:
        built = _columns(url, "analytics", model)
        assert built, f"dbt built no analytics.{model}"
        assert _columns(url, "standin", model) == built, model
