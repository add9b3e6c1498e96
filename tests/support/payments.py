"""Test helpers for deduction, alerts and top-ups: a stand-in priced-usage mart, accounts with
payment settings, and the local emulators (Stripe, SMTP, webhooks) started per test."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal

import psycopg
import pytest

from billing_pipeline.lifecycle.machine import state_sql
from tests.support.contracts import stand_in_ddl

# The stand-in marts, generated from their dbt contracts (tests/support/contracts.py); the real
# tables come from dbt. Settlement reads fct_usage_charges: per account, hour and usage kind,
# rounded half-even to micro-credits (dbt's round_half_even; the stand-ins are filled already rounded).
PRICED_USAGE_DDL = stand_in_ddl("fct_priced_usage")
USAGE_CHARGES_DDL = stand_in_ddl("fct_usage_charges")


def create_priced_usage_mart(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(PRICED_USAGE_DDL)
        conn.execute(USAGE_CHARGES_DDL)


def replace_priced_usage(url: str, hour: datetime, rows: Iterable[tuple]) -> None:
    """Re-materialise one hour of the stand-in mart, as an incremental dbt run would.

    rows: (account_id, usage_kind, resource, amount[, is_estimate])
    """
    rows = list(rows)
    charges: dict[tuple[str, str], list] = {}
    for account, kind, _resource, amount, *rest in rows:
        total = charges.setdefault((account, kind), [Decimal(0), False, 0])
        total[0] += Decimal(amount)
        total[1] = total[1] or (bool(rest[0]) if rest else False)
        total[2] += 1
    with psycopg.connect(url) as conn:
        conn.execute("DELETE FROM analytics.fct_priced_usage WHERE hour = %s", (hour,))
        conn.execute("DELETE FROM analytics.fct_usage_charges WHERE hour = %s", (hour,))
        with conn.cursor().copy(
            "COPY analytics.fct_priced_usage (account_id, hour, usage_kind, resource, deployment_id, "
            "quantity, unit, unit_price, amount, is_estimate) FROM STDIN"
        ) as copy:
            for account, kind, resource, amount, *rest in rows:
                copy.write_row(
                    (
                        account,
                        hour,
                        kind,
                        resource,
                        f"dep-{account}",
                        Decimal("1"),
                        "core_hour",
                        Decimal(amount),
                        Decimal(amount),
                        bool(rest[0]) if rest else False,
                    )
                )
        with conn.cursor().copy(
            "COPY analytics.fct_usage_charges (hour, account_id, usage_kind, amount, amount_exact, is_estimate, "
            "priced_row_count) FROM STDIN"
        ) as copy:
            for (account, kind), (exact, estimate, count) in charges.items():
                copy.write_row(
                    (hour, account, kind, exact.quantize(Decimal("0.000001"), ROUND_HALF_EVEN), exact, estimate, count)
                )


def set_balance(url: str, account_id: str, amount: Decimal, key: str) -> None:
    from billing_pipeline.ledger import Entry, post_entry

    with psycopg.connect(url) as conn:
        post_entry(conn, Entry(account_id, "topup", amount, key))


def configure_account(url: str, account_id: str, **columns) -> None:
    """Set account columns (notify_email, auto_topup_enabled, ...) for a test."""
    if not columns:
        return
    sets = ", ".join(f"{name} = %({name})s" for name in columns)
    with psycopg.connect(url) as conn:
        conn.execute(f"UPDATE billing.accounts SET {sets} WHERE id = %(id)s", {**columns, "id": account_id})


BALANCES_DDL = stand_in_ddl("fct_account_balances")

# A whole fct_account_balances row as dbt computes it from the ledger cache and the given burn
# rate (nothing undeducted: the stand-in's usage is settled), so every NOT NULL column is filled.
_BALANCE_ROW = (
    """
INSERT INTO analytics.fct_account_balances (account_id, ledger_balance, usage_not_yet_deducted, available_balance,
    burn_rate_per_hour, burn_rate_includes_estimates, runway_hours, low_balance_threshold, lifecycle_state,
    lifecycle_state_source, as_of)
SELECT a.id, b.balance, 0, b.balance, %(burn)s, false,
       CASE WHEN b.balance <= 0 THEN 0 WHEN %(burn)s > 0 THEN round(b.balance / %(burn)s, 2) END,
       a.low_balance_threshold, """
    + state_sql("b.balance", "a.low_balance_threshold")
    + """, 'derived_from_balance', %(as_of)s
FROM billing.accounts a
CROSS JOIN LATERAL (SELECT coalesce((SELECT balance FROM billing.credits c WHERE c.account_id = a.id), 0) AS balance) b
WHERE a.id = %(account)s
ON CONFLICT (account_id) DO UPDATE SET burn_rate_per_hour = excluded.burn_rate_per_hour,
    runway_hours = excluded.runway_hours
"""
)


def set_burn_rate(
    url: str, account_id: str, per_hour: Decimal, as_of: datetime = datetime(2026, 11, 25, tzinfo=UTC)
) -> None:
    """A stand-in fct_account_balances row (the real one comes from dbt)."""
    with psycopg.connect(url) as conn:
        conn.execute(BALANCES_DDL)
        conn.execute(_BALANCE_ROW, {"account": account_id, "burn": per_hour, "as_of": as_of})


def post(url: str, account_id: str, type_: str, amount: str, key: str) -> None:
    from billing_pipeline.ledger import Entry, post_entry

    reference = (
        {"hour": key, "usage_kind": "workload_consumption", "account_id": account_id}
        if type_ == "usage_deduction"
        else {}
    )
    with psycopg.connect(url) as conn:
        post_entry(conn, Entry(account_id, type_, Decimal(amount), key, reference))


WEBHOOK_SECRET = "whsec_test_not_a_real_secret"


@pytest.fixture
def smtp_sink():
    from devkit.emulators.smtp_sink import start_smtp_sink

    sink = start_smtp_sink()
    yield sink
    sink.stop()


@pytest.fixture
def webhook_receiver():
    from devkit.emulators.webhook_receiver import start_webhook_receiver

    receiver = start_webhook_receiver()
    yield receiver
    receiver.stop()


@pytest.fixture
def notify(smtp_sink):
    from billing_pipeline.resources.notify import NotifyResource

    return NotifyResource(
        smtp_host=smtp_sink.host,
        smtp_port=smtp_sink.port,
        smtp_from="billing@satusky.test",
        webhook_secret=WEBHOOK_SECRET,
    )


@pytest.fixture
def stripe_emulator():
    from devkit.emulators.stripe_emulator import start_stripe_emulator

    emulator = start_stripe_emulator()
    yield emulator
    emulator.stop()
