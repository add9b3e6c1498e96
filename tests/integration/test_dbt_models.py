"""The dbt models on real PostgreSQL, sources seeded with SQL: figures computed by hand.

Scenario (2025-03-01, hours 10:00-14:00 UTC):
- a1's deployment d1 runs pod p1 on shared node shared-1 (cpu usage 0.5 / request 1, memory
  usage 2 / request 1 GiB), pod p2 on node rented-a1 (cpu 2 / 1, memory 4 / 1), a 10 GiB volume
  and 0.5 GiB egress per hour from p1;
- a1 rents a gpu-large machine backing rented-a1 from 10:20 to 12:05 (1.20 per machine-hour);
- a2's deployment d2 runs pod q1 on rented-a1 (cpu 1 / 1): an exception while a1 rents it;
- prices: cpu 0.04 per core-hour on max(request, usage) until 12:00, 0.06 after; memory 0.005
  per GiB-hour on usage; storage 0.0002 per GiB-hour; egress 0.08 per GiB;
- hour 12:00 is incomplete in Prometheus (an estimate).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from billing_pipeline.ledger import Entry, post_entries
from tests.support import dbt as d

UTC = UTC
H10 = datetime(2025, 3, 1, 10, tzinfo=UTC)
HOURS = [H10 + timedelta(hours=i) for i in range(4)]
D = Decimal


def seed_scenario(url: str) -> None:
    d.add_accounts(url, "a1", "a2")
    d.add_deployment(url, "d1", "a1")
    d.add_deployment(url, "d2", "a2")
    d.add_price(
        url, "cpu-old", "cpu", "core_hour", "0.04", basis="max_request_usage", end=datetime(2025, 3, 1, 12, tzinfo=UTC)
    )
    d.add_price(
        url,
        "cpu-new",
        "cpu",
        "core_hour",
        "0.06",
        basis="max_request_usage",
        start=datetime(2025, 3, 1, 12, tzinfo=UTC),
    )
    d.add_price(url, "mem", "memory", "gib_hour", "0.005", basis="usage")
    d.add_price(url, "sto", "storage", "gib_hour", "0.0002")
    d.add_price(url, "egr", "network_egress", "gib", "0.08")
    d.add_price(url, "gl", "machine", "machine_hour", "1.20", machine_type="gpu-large")
    for h in HOURS:
        d.add_container_hour(
            url,
            h,
            "p1",
            deployment_id="d1",
            account_id="a1",
            node="shared-1",
            cpu_usage="0.5",
            cpu_request="1",
            mem_usage="2",
            mem_request="1",
        )
        d.add_container_hour(
            url,
            h,
            "p2",
            deployment_id="d1",
            account_id="a1",
            node="rented-a1",
            cpu_usage="2",
            cpu_request="1",
            mem_usage="4",
            mem_request="1",
        )
        d.add_container_hour(
            url, h, "q1", deployment_id="d2", account_id="a2", node="rented-a1", cpu_usage="1", cpu_request="1"
        )
        d.add_volume_hour(url, h, "data-d1", deployment_id="d1", account_id="a1", gib_hours="10")
        d.add_network_hour(url, h, "p1", deployment_id="d1", account_id="a1", node="shared-1", egress_gib="0.5")
    d.mark_hours(url, H10, 2, complete=True)
    d.mark_hours(url, HOURS[2], 1, complete=False)
    d.mark_hours(url, HOURS[3], 1, complete=True)
    d.add_rental(
        url,
        "r1",
        "a1",
        "gpu-large",
        "rented-a1",
        datetime(2025, 3, 1, 10, 20, tzinfo=UTC),
        datetime(2025, 3, 1, 12, 5, tzinfo=UTC),
    )


# Hand-computed charges per (account, hour, usage kind).
def cpu_price(h):  # price change at 12:00
    return D("0.04") if h.hour < 12 else D("0.06")


def expected_charges() -> dict[tuple[str, datetime, str], Decimal]:
    out = {}
    for h in HOURS:
        shared = cpu_price(h) * 1 + D("0.005") * 2 + D("0.0002") * 10 + D("0.08") * D("0.5")
        own_node = cpu_price(h) * 2 + D("0.005") * 4  # covered while a1 rents rented-a1 (10, 11, 12)
        out[("a1", h, "workload_consumption")] = shared + (own_node if h.hour == 13 else 0)
        out[("a2", h, "workload_consumption")] = cpu_price(h) * 1
    out[("a1", HOURS[0], "machine_rental")] = D("1.20") * D(2400) / D(3600)
    out[("a1", HOURS[1], "machine_rental")] = D("1.20")
    out[("a1", HOURS[2], "machine_rental")] = D("1.20") * D(300) / D(3600)
    return {k: v.quantize(D("0.000001")) for k, v in out.items()}


def charges(url: str) -> dict[tuple[str, datetime, str], Decimal]:
    return {
        (a, h, k): amt
        for a, h, k, amt in d.query(url, "SELECT account_id, hour, usage_kind, amount FROM analytics.fct_usage_charges")
    }


def test_priced_usage_reconciliation_balances_and_invoice_lines(db_url, tmp_path):
    seed_scenario(db_url)
    with psycopg.connect(db_url) as conn:
        post_entries(
            conn,
            [
                Entry("a1", "topup", D("100"), "topup-a1", {"payment_intent": "pi_1"}),
                Entry("a1", "sla_credit", D("5"), "sla-a1", {"month": "2025-03"}),
                Entry(
                    "a1", "admin_adjustment", D("-1.5"), "adj-a1", {}, reason="goodwill correction", actor="ops@satusky"
                ),
                Entry(
                    "a1",
                    "usage_deduction",
                    D("-0.092"),
                    "usage:a1:h10",
                    {"hour": "2025-03-01T10:00:00+00:00", "usage_kind": "workload_consumption", "account_id": "a1"},
                ),
                # A usage correction (part of settling usage: no invoice line of its own) and a
                # reversal of the adjustment (a credit of its own: an invoice line).
                Entry(
                    "a1",
                    "reversal",
                    D("0.092"),
                    "usage:a1:h10:2",
                    {
                        "hour": "2025-03-01T10:00:00+00:00",
                        "usage_kind": "workload_consumption",
                        "account_id": "a1",
                        "reverses": 4,
                    },
                ),
                Entry("a1", "reversal", D("1.5"), "reverse-adj-a1", {"reverses": 3}),
                Entry("a2", "topup", D("0.1"), "topup-a2", {}),
            ],
        )
        # a2 was evaluated by the lifecycle (its persisted state wins over the balance's).
        conn.execute(
            "INSERT INTO billing.account_lifecycle (account_id, state, entered_at, grace_deadline, "
            "evaluated_at) VALUES ('a2', 'grace_period', %s, %s, %s)",
            (H10, H10 + timedelta(hours=72), H10),
        )
    d.build(db_url, tmp_path, start=H10, hours=4)

    expected = expected_charges()
    assert charges(db_url) == expected
    # Spot values, so a wrong hand formula cannot hide behind the same wrong SQL.
    assert expected[("a1", HOURS[0], "workload_consumption")] == D("0.092000")
    assert expected[("a1", HOURS[2], "workload_consumption")] == D("0.112000")
    assert expected[("a1", HOURS[3], "workload_consumption")] == D("0.252000")
    assert expected[("a1", HOURS[0], "machine_rental")] == D("0.800000")

    rows = d.query(
        db_url,
        """
        SELECT hour, resource, coverage, is_covered_by_rental, is_reconciliation_exception, quantity,
               unit_price, amount, list_amount, is_estimate
        FROM analytics.fct_priced_usage WHERE account_id = 'a1' AND usage_kind = 'workload_consumption'
          AND resource = 'cpu' ORDER BY hour, coverage""",
    )
    by = {(r[0].hour, r[2]): r for r in rows}
    # Own rented node: covered (amount 0, list value kept); both bases: cpu max(request, usage).
    assert by[(10, "covered_by_rental")][3:9] == (True, False, D(2), D("0.04"), D(0), D("0.08"))
    assert by[(10, "charged")][5:8] == (D(1), D("0.04"), D("0.04"))  # max(1, 0.5) = 1
    assert by[(12, "charged")][6] == D("0.06")  # price change at 12:00
    assert by[(12, "charged")][9] is True and by[(11, "charged")][9] is False  # incomplete hour = estimate
    assert by[(13, "charged")][5] == D(3)  # rental ended 12:05: p1 (1) + p2 (2) on shared nodes
    mem = d.query(
        db_url,
        "SELECT sum(quantity) FROM analytics.fct_priced_usage WHERE account_id = 'a1' "
        "AND resource = 'memory' AND hour = %s AND coverage = 'charged'",
        (H10,),
    )
    assert mem == [(D(2),)]  # memory on usage basis: 2, not max(request 1, usage 2) summed differently

    # Both streams distinct; the exception is a2's consumption on a1's rented node.
    kinds = d.query(db_url, "SELECT usage_kind, count(*) FROM analytics.fct_priced_usage GROUP BY 1 ORDER BY 1")
    assert kinds == [("machine_rental", 3), ("workload_consumption", 26)]
    exc = d.query(
        db_url,
        "SELECT account_id, hour, amount FROM analytics.fct_priced_usage "
        "WHERE is_reconciliation_exception ORDER BY hour",
    )
    assert [(a, h.hour, amt) for a, h, amt in exc] == [
        ("a2", 10, D("0.04")),
        ("a2", 11, D("0.04")),
        ("a2", 12, D("0.06")),
    ]

    recon = d.query(
        db_url,
        """
        SELECT hour, account_id, node_name, machine_hours_rented, cpu_core_hours_used,
               reconciliation_status, is_exception, covered_consumption_amount, exception_reason
        FROM analytics.fct_usage_reconciliation ORDER BY hour, account_id""",
    )
    assert [(r[0].hour, r[1], r[2], r[5]) for r in recon] == [
        (10, "a1", "rented-a1", "covered_by_rental"),
        (10, "a2", "rented-a1", "exception"),
        (11, "a1", "rented-a1", "covered_by_rental"),
        (11, "a2", "rented-a1", "exception"),
        (12, "a1", "rented-a1", "covered_by_rental"),
        (12, "a2", "rented-a1", "exception"),
    ]
    assert recon[0][3] == D(2400) / D(3600) or abs(recon[0][3] - D(2) / D(3)) < D("1e-15")
    assert recon[0][4] == D(2) and recon[0][7] == D("0.1000")
    assert "rented by account(s) a1" in recon[1][8]

    # Balances at 14:00: ledger 100 + 5 - 1.5 - 0.092 + 0.092 + 1.5 = 105; nothing of a1's usage
    # stays deducted (the hour-10 deduction was reversed); charged a1 = sum of expected.
    a1_charged = sum(v for (a, _, _), v in expected.items() if a == "a1")
    bal = d.query(
        db_url,
        "SELECT account_id, ledger_balance, usage_not_yet_deducted, burn_rate_per_hour, "
        "runway_hours, lifecycle_state FROM analytics.fct_account_balances ORDER BY 1",
    )
    assert bal[0][:3] == ("a1", D("105"), a1_charged)
    burn = (a1_charged / 24).quantize(D("0.000001"))
    assert bal[0][3] == burn == D("0.110333")
    assert bal[0][4] == ((D("105") - a1_charged) / burn).quantize(D("0.01"))
    assert bal[0][5] == "healthy"
    a2_charged = sum(v for (a, _, _), v in expected.items() if a == "a2")
    assert bal[1] == ("a2", D("0.1"), a2_charged, (a2_charged / 24).quantize(D("0.000001")), D(0), "grace_period")
    sources = d.query(
        db_url, "SELECT account_id, lifecycle_state_source FROM analytics.fct_account_balances ORDER BY 1"
    )
    assert sources == [("a1", "derived_from_balance"), ("a2", "lifecycle")]

    # No invoice yet: the month's usage is an estimate (fct_unbilled_usage), per kind and resource.
    lines = d.query(
        db_url,
        "SELECT usage_month, usage_kind, resource, machine_type, charged_quantity, estimated_amount "
        "FROM analytics.fct_unbilled_usage WHERE account_id = 'a1' ORDER BY usage_kind, resource",
    )
    usage = {(l[1], l[2]): (l[0], l[3], l[4], l[5]) for l in lines}
    assert {v[0] for v in usage.values()} == {date(2025, 3, 1)}
    _month, machine_type, quantity, amount = usage[("machine_rental", "machine")]
    assert machine_type == "gpu-large" and abs(quantity - D("1.75")) < D("1e-15") and amount == D("-2.100000")
    # Charged cpu: 1 core-hour on shared-1 each hour, plus 2 on rented-a1 at 13:00 after the rental.
    assert usage[("workload_consumption", "cpu")][2:] == (D(6), -(D("0.04") * 2 + D("0.06") + D("0.18")))
    assert usage[("workload_consumption", "storage")][2:] == (D(40), D("-0.008000"))

    # The analyst role reads the marts and nothing else.
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("SET ROLE billing_analyst")
        assert conn.execute("SELECT count(*) FROM analytics.fct_priced_usage").fetchone()[0] == 29
        for mart in ("fct_usage_charges", "fct_usage_reconciliation", "fct_account_balances", "fct_unbilled_usage"):
            assert conn.execute(f"SELECT count(*) FROM analytics.{mart}").fetchone()[0] > 0
        for forbidden in (
            "billing.credit_transactions",
            "billing.credits",
            "billing.metric_container_hours",
            "billing.machine_rental_hours",
            "billing.pricing_configs",
            "analytics_staging.stg_ledger__credit_transactions",
            "analytics_intermediate.int_workload_usage_priced",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"SELECT 1 FROM {forbidden} LIMIT 1")


def test_incremental_runs_equal_a_full_refresh_even_after_late_data(db_url, tmp_path):
    seed_scenario(db_url)
    as_of = {"as_of": "2025-03-01T14:00:00+00:00"}
    d.build(db_url, tmp_path, start=H10, hours=2, vars=as_of)
    d.build(db_url, tmp_path, start=HOURS[2], hours=2, vars=as_of)
    # Late data for 10:00: a2 turns out to rent shared-1 (so a1's p1 there is now an exception),
    # and a gpu price row arrives. Re-running that one hour must leave no stale row behind.
    d.add_rental(
        db_url,
        "r2",
        "a2",
        "gpu-large",
        "shared-1",
        datetime(2025, 3, 1, 10, 0, tzinfo=UTC),
        datetime(2025, 3, 1, 11, 0, tzinfo=UTC),
    )
    d.build(db_url, tmp_path, start=H10, hours=1, vars=as_of)
    marts = [
        "fct_priced_usage",
        "fct_usage_charges",
        "fct_usage_reconciliation",
        "fct_account_balances",
        "fct_unbilled_usage",
    ]
    incremental = {m: sorted(d.query(db_url, f"SELECT * FROM analytics.{m}"), key=repr) for m in marts}
    assert ("a1", H10) in {(r[2], r[1]) for r in incremental["fct_priced_usage"] if r[9] == "other_account_node"}
    d.build(db_url, tmp_path, extra=["--full-refresh"], vars=as_of)
    full = {m: sorted(d.query(db_url, f"SELECT * FROM analytics.{m}"), key=repr) for m in marts}
    for m in marts:
        assert incremental[m] == full[m], m
    assert len(full["fct_priced_usage"]) == 30


def test_usage_without_a_price_fails_the_build_naming_resource_machine_type_and_hour(db_url, tmp_path):
    seed_scenario(db_url)
    # gpu requests with no gpu price at all; a machine type nobody priced; a negative price row.
    d.add_container_hour(db_url, HOURS[1], "g1", deployment_id="d2", account_id="a2", node="shared-1", gpu="1")
    d.add_rental(
        db_url,
        "r9",
        "a2",
        "tiny",
        "tiny-node",
        datetime(2025, 3, 1, 11, 30, tzinfo=UTC),
        datetime(2025, 3, 1, 11, 45, tzinfo=UTC),
    )
    d.add_price(db_url, "tiny-neg", "machine", "machine_hour", "-0.5", machine_type="tiny")
    run = d.build(db_url, tmp_path, start=H10, hours=4, check=False)
    assert not run.ok
    assert "no price in force for resource gpu, machine type -, hour 2025-03-01T11:00Z" in run.output
    assert "no price in force for resource machine, machine type tiny, hour 2025-03-01T11:00Z" in run.output
    assert "tiny-neg (negative unit_price -0.5)" in run.output
    # The rejected row is also reported on its own (a warning, an asset check in Dagster).
    assert re.search(r"WARN 1 assert_no_rejected_pricing_configs", run.output)
    # Nothing was priced (certainly not at zero): the mart was never built.
    assert d.query(db_url, "SELECT to_regclass('analytics.fct_priced_usage') IS NULL") == [(True,)]
    # Hours outside the blocked ones still build: 12:00 and 13:00 for a1 (both kinds at 12:00) and a2.
    d.build(db_url, tmp_path, start=HOURS[2], hours=2)
    assert d.query(db_url, "SELECT count(*), min(hour) FROM analytics.fct_usage_charges") == [(5, HOURS[2])]


def test_a_failed_build_through_dagster_still_records_what_it_built(db_url):
    """The same missing price, through the Dagster asset: the step fails, and the models dbt built
    before the failure are still recorded as materialised."""
    import dagster as dg

    from billing_pipeline.core.hours import Hour
    from billing_pipeline.resources import PostgresResource
    from billing_pipeline.transform.assets import dbt_model_key, dbt_usage_models
    from billing_pipeline.transform.resources import dbt_resource

    seed_scenario(db_url)
    d.add_container_hour(db_url, HOURS[1], "g1", deployment_id="d2", account_id="a2", node="shared-1", gpu="1")
    result = dg.materialize(
        [dbt_usage_models],
        partition_key=Hour(HOURS[1]).key,
        raise_on_error=False,
        resources={"dbt": dbt_resource(), "postgres": PostgresResource(database_url=db_url)},
    )
    assert not result.success
    built = {e.asset_key for e in result.get_asset_materialization_events()}
    assert dbt_model_key("stg_ingestion__metric_container_hours") in built
    assert dbt_model_key("fct_priced_usage") not in built
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    error = str(failure.event_specific_data.error)
    assert "dbt" in failure.message or "dbt" in error
    # The failed call's folder keeps dbt's debug log, written from the call's events: the SQL it
    # ran and the error, in dbt's own line format. A call that succeeds writes none.
    debug_log = Path(re.search(r"the debug log is (\S+/dbt\.log)", error).group(1))
    text = debug_log.read_text()
    assert re.match(r"\d\d:\d\d:\d\d\.\d{6} \[info \] \[MainThread\]: Running with dbt=", text)
    assert re.search(r"\[debug\] \[.{10}\]: On model\.satusky_billing\.stg_ingestion__metric_container_hours: ", text)
    assert re.search(r"\[error\] \[MainThread\]: Failure in model fct_priced_usage", text)
    assert "no price in force for resource gpu, machine type -, hour 2025-03-01T11:00Z" in text
