"""Target-mode auto top-up (issue 22, point 4; docs/rules/ledger.md) against real PostgreSQL and localstripe:
the charge takes the balance exactly to ``auto_topup_target_balance``, within the monthly limit
(capped, and the account told); top-ups, automatic and by hand, keep what was paid in
``reference.paid`` and open paid grants."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import psycopg
import pytest

from billing_pipeline.cli.main import main as billing
from billing_pipeline.ledger import balance_of, verify_ledger
from billing_pipeline.payments.topup import run_auto_topup
from billing_pipeline.resources.stripe import StripeResource
from devkit.emulators.stripe_emulator import create_customer_with_card, payment_intents
from tests.support.payments import configure_account, post, stripe_emulator
from tests.support.platform import create_accounts

D = Decimal
NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


@pytest.fixture
def stripe_res(stripe_emulator):
    return StripeResource(api_key=stripe_emulator.api_key, api_base=stripe_emulator.url)


def target_mode(url, emulator, account, target="60", threshold="10", limit=None):
    customer, method = create_customer_with_card(emulator.url, f"{account}@example.test", "4242424242424242")
    configure_account(
        url,
        account,
        auto_topup_enabled=True,
        auto_topup_mode="target",
        auto_topup_target_balance=D(target),
        auto_topup_threshold=D(threshold),
        auto_topup_monthly_limit=None if limit is None else D(limit),
        stripe_customer_id=customer,
        stripe_payment_method_id=method,
    )


def auto_topups(url):
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT account_id, amount, balance_after, reference -> 'paid' FROM billing.credit_transactions "
            "WHERE type = 'auto_topup' ORDER BY id"
        ).fetchall()


def paid_grants(url):
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT g.account_id, g.kind, g.source_type, g.granted, g.paid_amount, g.paid_currency "
            "FROM billing.grants g WHERE g.kind = 'paid' ORDER BY g.entry_id"
        ).fetchall()


def notices(url, account):
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT kind, subject, body FROM billing.notification_outbox WHERE account_id = %s ORDER BY id", (account,)
        ).fetchall()


def test_a_target_mode_top_up_lands_exactly_on_the_target(db_url, stripe_emulator, stripe_res):
    create_accounts(db_url, "acme", "fractional")
    target_mode(db_url, stripe_emulator, "acme")
    target_mode(db_url, stripe_emulator, "fractional")
    post(db_url, "acme", "topup", "7.50", "t1")
    post(db_url, "fractional", "topup", "7.126544", "t2")
    result = run_auto_topup(db_url, stripe_res, NOW)
    assert sorted((a, amount) for a, amount, _ in result.charged) == [("acme", D("52.50")), ("fractional", D("52.88"))]
    assert result.capped == []
    assert sorted(pi["amount"] for pi in payment_intents(stripe_emulator.url)) == [5250, 5288]
    assert auto_topups(db_url) == [
        ("acme", D("52.500000"), D("60.000000"), {"amount": "52.500000", "currency": "usd"}),
        # A balance with fractions of a cent: 52.873456 is charged as 52.88 (rounded up, never below the target).
        ("fractional", D("52.880000"), D("60.006544"), {"amount": "52.880000", "currency": "usd"}),
    ]
    # Run again: both at (or above) their target, above the threshold: nothing charged.
    assert run_auto_topup(db_url, stripe_res, NOW).charged == []
    with psycopg.connect(db_url) as conn:
        assert balance_of(conn, "acme") == D("60.000000")
    # The top-ups open paid grants that keep what was paid.
    assert [row for row in paid_grants(db_url) if row[2] == "auto_topup"] == [
        ("acme", "paid", "auto_topup", D("52.500000"), D("52.500000"), "usd"),
        ("fractional", "paid", "auto_topup", D("52.880000"), D("52.880000"), "usd"),
    ]


def test_a_target_beyond_the_monthly_limit_is_capped_and_the_account_told(db_url, stripe_emulator, stripe_res):
    create_accounts(db_url, "acme")
    target_mode(db_url, stripe_emulator, "acme", target="60", limit="30")
    post(db_url, "acme", "topup", "7.50", "t1")
    result = run_auto_topup(db_url, stripe_res, NOW)
    assert [(a, amount) for a, amount, _ in result.charged] == [("acme", D("30.00"))]
    assert result.capped == [("acme", D("30.00"), D("52.50"))]
    assert [(a, amount, balance) for a, amount, balance, _ in auto_topups(db_url)] == [
        ("acme", D("30.000000"), D("37.500000"))
    ]
    kinds = [k for k, _, _ in notices(db_url, "acme")]
    assert kinds == ["auto_topup_capped", "auto_topup_succeeded"]
    _, subject, body = notices(db_url, "acme")[0]
    assert subject == "Satusky: auto top-up on account acme capped by the monthly limit"
    assert body == (
        "Reaching the target balance of 60.000000 credits needs 52.50 credits (the balance is 7.500000), but the "
        "monthly auto top-up limit of 30.000000 credits leaves 30.00 in November 2026 (0 already used), so 30.00 "
        "credits are charged. Add credits by hand or raise the limit to reach the target."
    )
    # Spent again below the threshold in the same month: the limit is used up, nothing is charged.
    post(db_url, "acme", "usage_deduction", "-33", "2026-11-25T13:00:00Z")
    again = run_auto_topup(db_url, stripe_res, NOW)
    assert again.charged == [] and again.capped == []
    assert again.skipped == [("acme", "monthly limit 30.000000 would be exceeded (30.000000 used)")]
    assert [k for k, _, _ in notices(db_url, "acme")][-1] == "auto_topup_monthly_limit"
    assert "Auto top-up of 55.50 credits was not charged" in notices(db_url, "acme")[-1][2]
    assert len(payment_intents(stripe_emulator.url)) == 1
    with psycopg.connect(db_url) as conn:
        assert verify_ledger(conn).ok


def test_a_manual_top_up_keeps_what_was_paid(db_url, capsys):
    create_accounts(db_url, "acme")
    assert billing(["topup", "acme", "12.5", "--reference", "wire-1", "--currency", "eur", "--json"]) == 0
    assert billing(["topup", "acme", "3", "--reference", "wire-2"]) == 0
    capsys.readouterr()
    with psycopg.connect(db_url) as conn:
        refs = conn.execute(
            "SELECT reference FROM billing.credit_transactions WHERE type = 'topup' ORDER BY id"
        ).fetchall()
    assert [r[0] for r in refs] == [
        {"payment_reference": "wire-1", "paid": {"amount": "12.500000", "currency": "eur"}},
        {"payment_reference": "wire-2", "paid": {"amount": "3.000000", "currency": "usd"}},
    ]
    assert [(r[3], r[4], r[5]) for r in paid_grants(db_url)] == [
        (D("12.500000"), D("12.500000"), "eur"),
        (D("3.000000"), D("3.000000"), "usd"),
    ]
    assert billing(["topup", "acme", "1", "--reference", "wire-3", "--currency", "EURO", "--json"]) == 2
    err = json.loads(capsys.readouterr().err)
    assert "--currency 'EURO' is not a currency code" in err["error"]
