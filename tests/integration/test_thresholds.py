"""Every money threshold tested at exact equality, as docs/rules/ and the README state it:

* SLA tiers (docs/rules/month-end.md): "the most severe tier whose threshold the availability is
  strictly below": availability exactly 99.9 % gets nothing, exactly 99 % gets 10 %, exactly
  95 % gets 25 %; one down minute more drops to the next tier.
* Auto top-up monthly limit (README, payments): "a charge that would exceed
  auto_topup_monthly_limit is not made": reaching the limit exactly is allowed, a micro-credit
  short of the room is refused. Auto top-up starts when the balance is "at or below the threshold".
* Low-balance warning (docs/rules/lifecycle.md): low_balance is "0 < balance <= threshold": a
  balance exactly at the threshold is a crossing; a micro-credit above it is not.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest

from billing_pipeline.alerts.balance import evaluate_balance_alerts
from billing_pipeline.invoicing.months import parse_month
from billing_pipeline.invoicing.sla import credit_sla
from billing_pipeline.payments.topup import run_auto_topup
from billing_pipeline.resources.stripe import StripeResource
from devkit.emulators.stripe_emulator import create_customer_with_card, payment_intents
from tests.support.month_end import create_platform, create_priced_usage_mart, insert_month_usage, insert_probe_month
from tests.support.payments import configure_account, post, stripe_emulator
from tests.support.platform import create_accounts

D = Decimal
MONTH = "2026-10"
NOW = datetime(2026, 10, 20, 12, tzinfo=UTC)
# 42,000 measured minutes (700 of October's 744 hours; the first 44 hours have no samples), so
# each threshold is a whole number of down minutes: 99.9 % = 42 down, 99 % = 420, 95 % = 2,100.
SKIP_HOURS = 44
MEASURED = 42_000
SLA_CASES = {  # deployment -> (down minutes, expected tier, expected share)
    "dep-at-99-9": (42, None, None),
    "dep-under-99-9": (43, "below_99_9", D("0.10")),
    "dep-at-99": (420, "below_99_9", D("0.10")),
    "dep-under-99": (421, "below_99", D("0.25")),
    "dep-at-95": (2100, "below_99", D("0.25")),
    "dep-under-95": (2101, "below_95", D("0.50")),
}


def test_availability_exactly_at_each_sla_threshold_is_not_below_it(db_url):
    accounts = {dep.replace("dep-", "acct-"): dep for dep in SLA_CASES}
    with psycopg.connect(db_url) as conn:
        create_platform(conn, accounts)
        create_priced_usage_mart(conn)
        insert_month_usage(conn, MONTH, accounts, renters=[])
        for dep, (down, *_) in SLA_CASES.items():
            insert_probe_month(conn, dep, MONTH, down_minutes=down, skip_hours=SKIP_HOURS)
        credit_sla(conn, parse_month(MONTH))
        rows = {
            r[0]: r[1:]
            for r in conn.execute(
                "SELECT deployment_id, measured_minutes, down_minutes, availability, tier_id, credit_share, outcome "
                "FROM billing.sla_measurements"
            )
        }
    for dep, (down, tier, share) in SLA_CASES.items():
        measured, got_down, availability, got_tier, got_share, outcome = rows[dep]
        assert (measured, got_down) == (MEASURED, down), dep
        # PostgreSQL carries the quotient to 20 places: exact at the thresholds, below them otherwise.
        assert abs(availability - D(MEASURED - down) / D(MEASURED)) < D("1e-19"), dep
        assert (got_tier, got_share, outcome) == (tier, share, "credit" if tier else "met"), dep
    assert rows["dep-at-99-9"][2] == D("0.999") and rows["dep-at-99"][2] == D("0.99")
    assert rows["dep-at-95"][2] == D("0.95")


@pytest.fixture
def stripe_res(stripe_emulator):
    return StripeResource(api_key=stripe_emulator.api_key, api_base=stripe_emulator.url)


def enable(url, emulator, account, *, amount, threshold, limit):
    customer, method = create_customer_with_card(emulator.url, f"{account}@example.test")
    configure_account(
        url,
        account,
        auto_topup_enabled=True,
        auto_topup_amount=D(amount),
        auto_topup_threshold=D(threshold),
        auto_topup_monthly_limit=D(limit),
        stripe_customer_id=customer,
        stripe_payment_method_id=method,
    )


def auto_topups(url):
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT account_id, amount FROM billing.credit_transactions WHERE type = 'auto_topup' ORDER BY id"
        ).fetchall()


def limit_notices(url):
    with psycopg.connect(url) as conn:
        return [
            r[0]
            for r in conn.execute(
                "SELECT account_id FROM billing.notification_outbox WHERE kind = 'auto_topup_monthly_limit' ORDER BY 1"
            )
        ]


def test_a_top_up_that_exactly_reaches_the_monthly_limit_is_made_one_a_micro_credit_over_is_not(
    db_url, stripe_emulator, stripe_res
):
    create_accounts(db_url, "exact", "over")
    enable(db_url, stripe_emulator, "exact", amount="25", threshold="10", limit="50")
    enable(db_url, stripe_emulator, "over", amount="25", threshold="10", limit="49.999999")
    for account in ("exact", "over"):
        post(db_url, account, "topup", "5", f"t-{account}")
    for i in range(2):
        run_auto_topup(db_url, stripe_res, NOW + timedelta(hours=i))
        for account in ("exact", "over"):
            post(db_url, account, "usage_deduction", "-25", f"u-{account}-{i}")  # back to 5
    # exact: 25 + 25 = 50, the limit itself: both made. over: 25, then 50 > 49.999999: refused.
    assert auto_topups(db_url) == [("exact", D("25")), ("over", D("25")), ("exact", D("25"))]
    assert sum(p["amount"] for p in payment_intents(stripe_emulator.url)) == 7500  # cents
    assert limit_notices(db_url) == ["over"]
    # The limit is used up exactly: a third charge for "exact" would exceed it.
    third = run_auto_topup(db_url, stripe_res, NOW + timedelta(hours=3))
    assert third.charged == [] and limit_notices(db_url) == ["exact", "over"]


def test_auto_top_up_starts_at_a_balance_exactly_at_its_threshold(db_url, stripe_emulator, stripe_res):
    create_accounts(db_url, "at", "above")
    for account in ("at", "above"):
        enable(db_url, stripe_emulator, account, amount="25", threshold="10", limit="1000")
    post(db_url, "at", "topup", "10", "t-at")
    post(db_url, "above", "topup", "10.000001", "t-above")
    result = run_auto_topup(db_url, stripe_res, NOW)
    assert [(a, amount) for a, amount, _key in result.charged] == [("at", D("25"))]
    assert auto_topups(db_url) == [("at", D("25"))]


def test_a_balance_exactly_at_the_warning_threshold_is_a_low_balance_crossing(db_url):
    create_accounts(db_url, "at", "above", threshold=D("10"))
    post(db_url, "at", "topup", "10", "t-at")
    post(db_url, "above", "topup", "10.000001", "t-above")
    with psycopg.connect(db_url) as conn:
        evaluated = evaluate_balance_alerts(conn, NOW)
        crossings = conn.execute(
            "SELECT account_id, kind, balance, threshold FROM billing.balance_alert_crossings"
        ).fetchall()
    assert evaluated.opened == [("at", "low_balance", 1)]
    assert crossings == [("at", "low_balance", D("10"), D("10"))]
