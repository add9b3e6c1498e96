"""Migration 0014 gives the entries posted before it their grants, draws, balances and debts, by
replaying the ledger in order; a paid top-up's paid amount comes from its reference, else from
its top-up attempt."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import psycopg
from alembic import command

from billing_pipeline.db.migrate import alembic_config
from billing_pipeline.ledger import Entry, post_entries, verify_ledger
from billing_pipeline.ledger.grants import check_grants
from tests.support.databases import server_url
from tests.support.grants import KIND, balances, debts, draws, h, keyed, usage
from tests.support.platform import create_accounts

D = Decimal


def test_the_migration_backfills_entries_posted_before_it(databases, frozen_clock, monkeypatch):
    url = databases.new()
    name = url.rsplit("/", 1)[1] + "_pre0014"
    with psycopg.connect(server_url("postgres"), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    old_url = server_url(name)
    databases.created.append(name)
    command.upgrade(alembic_config(old_url), "0013")
    create_accounts(old_url, "acme")
    # The posting of before 0014: no grants tables yet, so no hook.
    monkeypatch.setattr("billing_pipeline.ledger.posting.apply_staged_grants", lambda cur: None)
    with psycopg.connect(old_url, autocommit=True) as conn:

        def post(when: str, *entries: Entry) -> dict[str, int]:
            frozen_clock.set(when)
            return {r.idempotency_key: r.entry_id for r in post_entries(conn, list(entries))}

        post(
            "2026-11-01T08:00Z", Entry("acme", "topup", D("10"), "T1", {"paid": {"amount": "10.00", "currency": "eur"}})
        )
        ids = post("2026-11-01T11:00Z", usage("acme", "-4", h(1, 10), "U1"))
        post("2026-11-01T11:30Z", Entry("acme", "sla_credit", D("3"), "S1", {"month": "2026-10"}))
        ids |= post("2026-11-01T12:00Z", usage("acme", "-12", h(1, 11), "U2"))
        ids |= post("2026-11-01T13:00Z", Entry("acme", "auto_topup", D("20"), "AT", {"attempt_key": "AT"}))
        conn.execute(
            "INSERT INTO billing.topup_attempts (account_id, attempt_key, attempt_no, amount, month, stripe_customer_id, "
            "stripe_payment_method_id, status, ledger_entry_id, created_at) "
            "VALUES ('acme', 'AT', 1, 20, %s, 'cus_1', 'pm_1', 'succeeded', %s, now())",
            (date(2026, 11, 1), ids["AT"]),
        )
        post(
            "2026-11-01T14:00Z",
            Entry("acme", "reversal", D("2"), "R1", {"hour": h(1, 11), "usage_kind": KIND, "reverses": ids["U2"]}),
        )
        post("2026-11-01T15:00Z", Entry("acme", "admin_adjustment", D("5"), "A1", reason="goodwill", actor="ops"))
    monkeypatch.undo()

    command.upgrade(alembic_config(old_url), "head")
    with psycopg.connect(old_url, autocommit=True) as conn:
        # By hand: U1 draws T1 4; U2 draws S1 3 (priority 20 before 50), T1 6, and owes 3, which
        # the auto top-up pays; the reversal of 2 pops the newest draw of the hour: AT.
        assert draws(conn) == [
            ("U1", "T1", D("4")),
            ("U2", "S1", D("3")),
            ("U2", "T1", D("6")),
            ("U2", "AT", D("3")),
            ("R1", "AT", D("-2")),
        ]
        assert balances(conn) == [
            ("T1", "paid", 50, D("10"), D("0"), D("0")),
            ("S1", "free", 20, D("3"), D("0"), D("0")),
            ("AT", "paid", 50, D("1"), D("0"), D("19")),
            ("A1", "free", 30, D("0"), D("0"), D("5")),
        ]
        assert debts(conn) == []
        assert keyed(conn, "SELECT entry_id, paid_amount, paid_currency FROM billing.grants ORDER BY entry_id") == [
            ("T1", D("10.00"), "eur"),
            ("S1", None, None),
            ("AT", D("20.000000"), None),
            ("A1", None, None),
        ]
        assert check_grants(conn).problems == []
        assert verify_ledger(conn).ok
        # Posting after the migration carries on from the backfilled state.
        frozen_clock.set("2026-11-02T11:00Z")
        post_entries(conn, [usage("acme", "-6", h(2, 10), "U3")])
        assert draws(conn)[-2:] == [("U3", "A1", D("5")), ("U3", "AT", D("1"))]
        assert check_grants(conn).problems == []
