"""The real dbt build, then deduction: the ledger equals fct_priced_usage to the micro-credit,
also after late data re-materialises an hour (only the difference is posted)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal

import psycopg

from billing_pipeline.ledger import verify_ledger
from billing_pipeline.ledger.deduction import settle_priced_usage
from tests.support import dbt as d

UTC = UTC
H10 = datetime(2025, 3, 1, 10, tzinfo=UTC)
HOURS = [H10 + timedelta(hours=i) for i in range(3)]
D = Decimal


def seed(url: str) -> None:
    d.add_accounts(url, "a1", "a2")
    d.add_deployment(url, "d1", "a1")
    d.add_deployment(url, "d2", "a2")
    d.add_standard_prices(url, {"gpu-large": "1.20"})
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
            mem_usage="2.3333333",
            mem_request="1",
        )
        d.add_container_hour(
            url, h, "q1", deployment_id="d2", account_id="a2", node="shared-1", cpu_usage="1.7777777", cpu_request="1"
        )
        d.add_volume_hour(url, h, "data-d1", deployment_id="d1", account_id="a1", gib_hours="10")
    d.mark_hours(url, H10, 3, complete=True)
    d.add_rental(
        url,
        "r1",
        "a1",
        "gpu-large",
        "rented-a1",
        datetime(2025, 3, 1, 10, 20, tzinfo=UTC),
        datetime(2025, 3, 1, 11, 35, 7, tzinfo=UTC),
    )


def owed_by_mart(url):
    rows = d.query(
        url, "SELECT account_id, hour, usage_kind, sum(amount) FROM analytics.fct_priced_usage GROUP BY 1, 2, 3"
    )
    return {(a, h, k): v.quantize(D("0.000001"), rounding=ROUND_HALF_EVEN) for a, h, k, v in rows if v}


def deducted_by_ledger(url):
    rows = d.query(
        url,
        "SELECT account_id, (reference->>'hour')::timestamptz, reference->>'usage_kind', -sum(amount) "
        "FROM billing.credit_transactions WHERE type IN ('usage_deduction', 'reversal') GROUP BY 1, 2, 3",
    )
    return {(a, h, k): v for a, h, k, v in rows if v}


def test_deduction_equals_the_real_priced_usage_mart(db_url, tmp_path):
    seed(db_url)
    d.build(db_url, tmp_path, start=H10, hours=3)
    owed = owed_by_mart(db_url)
    assert len(owed) == 8  # a1 and a2 consumption x 3 hours, a1 rental in 2 hours
    with psycopg.connect(db_url, autocommit=True) as conn:
        for h in HOURS:
            settle_priced_usage(conn, h, h + timedelta(hours=1))
        assert settle_priced_usage(conn, H10, H10 + timedelta(hours=3)).posted == 0
    assert deducted_by_ledger(db_url) == owed
    charges = {
        (a, h, k): v
        for a, h, k, v in d.query(
            db_url, "SELECT account_id, hour, usage_kind, amount FROM analytics.fct_usage_charges"
        )
    }
    assert {k: v for k, v in charges.items() if v} == owed

    # Late data for 10:00: another container appears; dbt re-materialises that hour only.
    d.add_container_hour(
        db_url,
        H10,
        "p1",
        container="sidecar",
        deployment_id="d1",
        account_id="a1",
        node="shared-1",
        cpu_usage="3",
        cpu_request="1",
    )
    d.build(db_url, tmp_path, start=H10, hours=1)
    new_owed = owed_by_mart(db_url)
    key = ("a1", H10, "workload_consumption")
    assert new_owed[key] - owed[key] == D("0.120000")  # 3 core-hours at 0.04
    with psycopg.connect(db_url, autocommit=True) as conn:
        result = settle_priced_usage(conn, H10, H10 + timedelta(hours=1))
        assert (result.deductions, result.adjustments, result.reversals) == (0, 1, 0)
        assert result.total_deducted == D("0.120000")
        assert verify_ledger(conn).ok
    assert deducted_by_ledger(db_url) == new_owed
