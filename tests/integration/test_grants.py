"""Credit grants against real PostgreSQL (docs/rules/ledger.md, "Grants"): the burn-down
order, debt paid by the next grant, expiry, reversals giving back, the rebuild and `billing verify`.

Every expected draw is worked out by hand in the test, from the rules; entries are named by
their idempotency keys so a row reads as "this debit drew so much from that grant".
"""

from __future__ import annotations

import os
from decimal import Decimal

import psycopg
import pytest

from billing_pipeline.ledger import Entry, post_entries, verify_ledger
from billing_pipeline.ledger.grants import check_grants, open_grants, rebuild_draws
from tests.support.cycle import billing
from tests.support.grants import KIND, balances, debts, draws, h, keyed, post_at, usage
from tests.support.platform import create_accounts

D = Decimal


@pytest.fixture
def acme(db_url):
    create_accounts(db_url, "acme", "globex")
    return db_url


def test_a_month_of_paid_promotional_and_sla_grants_burns_in_the_stated_order(acme, frozen_clock):
    """Priority first (lower burns first), then earliest expiry (none last), then oldest; a debit
    only uses grants still valid at its usage hour; a late debit for an earlier hour still finds
    the grant that has since expired; an expiry takes what its grant has left."""
    with psycopg.connect(acme, autocommit=True) as conn:
        ids = post_at(
            conn,
            frozen_clock,
            "2026-11-01T08:00Z",
            Entry("acme", "topup", D("100"), "T1", {"paid": {"amount": "100.00", "currency": "usd"}}),
            Entry("acme", "promotional_grant", D("20"), "P1", {"grant": {"expires_at": "2026-11-10T00:00Z"}}),
            Entry("acme", "promotional_grant", D("15"), "P2", {"grant": {"expires_at": "2026-11-20T00:00Z"}}),
            Entry(
                "acme",
                "promotional_grant",
                D("10"),
                "P3",
                {"grant": {"priority": 60, "expires_at": "2026-11-25T00:00Z"}},
            ),
            Entry("acme", "promotional_grant", D("5"), "P4"),  # no expiry: after P1 and P2 of the same priority
        )
        ids |= post_at(
            conn,
            frozen_clock,
            "2026-11-02T08:00Z",
            Entry("acme", "sla_credit", D("30"), "S1", {"month": "2026-10", "deployment_id": "dep-1"}),
            Entry(
                "acme",
                "admin_adjustment",
                D("10"),
                "A1",
                {"grant": {"priority": 5, "expires_at": "2026-11-30T00:00Z"}},
                reason="goodwill",
                actor="ops",
            ),
        )
        # By hand. Burn order at the start: A1 (priority 5), P1 (10, expires 10th), P2 (10, 20th),
        # P4 (10, never), S1 (20), T1 (50), P3 (60).
        post_at(conn, frozen_clock, "2026-11-03T11:00Z", usage("acme", "-12", h(3, 10), "U1"))  # A1 10, P1 2
        post_at(conn, frozen_clock, "2026-11-09T11:00Z", usage("acme", "-15", h(9, 10), "U2"))  # P1 15 (3 left)
        # One batch, two validity segments: U3's hour is past P1's expiry (P1 skipped: P2 15, P4 5,
        # S1 30); U4 is late data for the 9th, when P1 was valid (P1 3, then T1 1; the rest is empty).
        post_at(
            conn,
            frozen_clock,
            "2026-11-11T11:00Z",
            usage("acme", "-50", h(11, 10), "U3"),
            usage("acme", "-4", h(9, 23), "U4"),
        )
        # A negative adjustment draws like usage, valid at its posting time: T1 2.
        post_at(
            conn,
            frozen_clock,
            "2026-11-12T09:00Z",
            Entry("acme", "admin_adjustment", D("-2"), "A2", reason="correction", actor="ops"),
        )
        # P3 expires with all of its 10 left.
        expiry = {"grant_entry_id": ids["P3"], "expires_at": "2026-11-25T00:00:00+00:00"}
        post_at(conn, frozen_clock, "2026-11-25T01:00Z", Entry("acme", "grant_expiry", D("-10"), "X3", expiry))

        assert draws(conn) == [
            ("U1", "A1", D("10")),
            ("U1", "P1", D("2")),
            ("U2", "P1", D("15")),
            ("U3", "P2", D("15")),
            ("U3", "P4", D("5")),
            ("U3", "S1", D("30")),
            ("U4", "P1", D("3")),
            ("U4", "T1", D("1")),
            ("A2", "T1", D("2")),
            ("X3", "P3", D("10")),
        ]
        assert balances(conn) == [
            ("T1", "paid", 50, D("3"), D("0"), D("97")),
            ("P1", "free", 10, D("20"), D("0"), D("0")),
            ("P2", "free", 10, D("15"), D("0"), D("0")),
            ("P3", "free", 60, D("0"), D("10"), D("0")),
            ("P4", "free", 10, D("5"), D("0"), D("0")),
            ("S1", "free", 20, D("30"), D("0"), D("0")),
            ("A1", "free", 5, D("10"), D("0"), D("0")),
        ]
        assert debts(conn) == []
        # balance = 100 + 20 + 15 + 10 + 5 + 30 + 10 - 12 - 15 - 50 - 4 - 2 - 10 = 97 = T1's remaining
        assert conn.execute("SELECT balance FROM billing.credits WHERE account_id = 'acme'").fetchone()[0] == D("97")
        assert keyed(
            conn, "SELECT entry_id, kind, source_type, paid_amount, paid_currency FROM billing.grants ORDER BY 1"
        )[0] == ("T1", "paid", "topup", D("100.00"), "usd")
        assert [(g.entry_id, g.remaining) for g in open_grants(conn, "acme", frozen_clock.now())] == [
            (ids["T1"], D("97"))
        ]
        check = check_grants(conn)
        assert check.problems == [] and (check.grants, check.draws) == (7, 10)


def test_a_debt_is_paid_first_by_the_next_top_up(acme, frozen_clock):
    with psycopg.connect(acme, autocommit=True) as conn:
        post_at(conn, frozen_clock, "2026-11-01T08:00Z", Entry("acme", "topup", D("10"), "T1"))
        post_at(conn, frozen_clock, "2026-11-01T11:00Z", usage("acme", "-15", h(1, 10), "U1"))  # T1 10, debt 5
        post_at(conn, frozen_clock, "2026-11-01T12:00Z", usage("acme", "-2.5", h(1, 11), "U2"))  # debt 2.5
        assert debts(conn) == [("U1", D("5")), ("U2", D("2.5"))]
        # The top-up first pays U1's debt, then what it can of U2's (oldest debit first), with draw
        # rows on those debits; nothing of it is left to draw on.
        post_at(conn, frozen_clock, "2026-11-02T08:00Z", Entry("acme", "topup", D("6"), "T2"))
        assert draws(conn) == [("U1", "T1", D("10")), ("U1", "T2", D("5")), ("U2", "T2", D("1"))]
        assert debts(conn) == [("U2", D("1.5"))]
        post_at(conn, frozen_clock, "2026-11-03T08:00Z", Entry("acme", "topup", D("20"), "T3"))
        assert draws(conn)[-1] == ("U2", "T3", D("1.5")) and debts(conn) == []
        post_at(conn, frozen_clock, "2026-11-03T11:00Z", usage("acme", "-1", h(3, 10), "U3"))
        assert draws(conn)[-1] == ("U3", "T3", D("1"))
        assert balances(conn) == [
            ("T1", "paid", 50, D("10"), D("0"), D("0")),
            ("T2", "paid", 50, D("6"), D("0"), D("0")),
            ("T3", "paid", 50, D("2.5"), D("0"), D("17.5")),
        ]
        assert check_grants(conn).problems == []


def test_a_batch_mixing_debits_and_a_top_up_processes_them_in_order(acme, frozen_clock):
    """One batch: a debit into debt, the top-up that pays it, then a debit that draws the rest."""
    with psycopg.connect(acme, autocommit=True) as conn:
        post_at(
            conn,
            frozen_clock,
            "2026-11-01T08:00Z",
            usage("acme", "-4", h(1, 6), "U1"),
            Entry("acme", "topup", D("10"), "T1"),
            usage("acme", "-3", h(1, 7), "U2"),
            Entry("globex", "promotional_grant", D("5"), "G1"),
            usage("globex", "-6", h(1, 7), "V1"),
        )
        assert draws(conn) == [("V1", "G1", D("5")), ("U1", "T1", D("4")), ("U2", "T1", D("3"))]
        assert debts(conn) == [("V1", D("1"))]
        assert check_grants(conn).problems == []


def test_a_reversal_gives_back_to_the_grants_drawn_from_most_recent_first(acme, frozen_clock):
    with psycopg.connect(acme, autocommit=True) as conn:
        post_at(
            conn,
            frozen_clock,
            "2026-11-01T08:00Z",
            Entry("acme", "topup", D("10"), "T1"),
            Entry("acme", "promotional_grant", D("5"), "P1"),
        )
        ids = post_at(conn, frozen_clock, "2026-11-01T11:00Z", usage("acme", "-12", h(1, 10), "U1"))  # P1 5, T1 7
        # A correction of the same hour (the settlement's adjusting deduction): T1 3.
        post_at(conn, frozen_clock, "2026-11-01T12:00Z", usage("acme", "-3", h(1, 10), "U1b", adjusts=ids["U1"]))
        # Less was owed: a reversal of 12 pops the hour's draws newest first: T1 3 (U1b), T1 7, P1 2.
        post_at(
            conn,
            frozen_clock,
            "2026-11-01T13:00Z",
            Entry("acme", "reversal", D("12"), "R1", {"hour": h(1, 10), "usage_kind": KIND, "reverses": ids["U1"]}),
        )
        assert draws(conn)[-2:] == [("R1", "T1", D("-10")), ("R1", "P1", D("-2"))]
        # A second reversal continues below what the first gave back: P1 2.
        post_at(
            conn,
            frozen_clock,
            "2026-11-01T14:00Z",
            Entry("acme", "reversal", D("2"), "R2", {"hour": h(1, 10), "usage_kind": KIND, "reverses": ids["U1"]}),
        )
        assert draws(conn)[-1] == ("R2", "P1", D("-2"))
        assert balances(conn) == [
            ("T1", "paid", 50, D("0"), D("0"), D("10")),
            ("P1", "free", 10, D("1"), D("0"), D("4")),
        ]
        assert check_grants(conn).problems == []


def test_a_reversal_cancels_the_debt_of_its_entries_first(acme, frozen_clock):
    with psycopg.connect(acme, autocommit=True) as conn:
        post_at(conn, frozen_clock, "2026-11-01T08:00Z", Entry("acme", "topup", D("5"), "T1"))
        ids = post_at(conn, frozen_clock, "2026-11-01T11:00Z", usage("acme", "-8", h(1, 10), "U1"))  # T1 5, debt 3
        post_at(conn, frozen_clock, "2026-11-01T12:00Z", usage("acme", "-1", h(1, 11), "U2"))  # debt 1 (another hour)
        post_at(
            conn,
            frozen_clock,
            "2026-11-01T13:00Z",
            Entry("acme", "reversal", D("4"), "R1", {"hour": h(1, 10), "usage_kind": KIND, "reverses": ids["U1"]}),
        )
        # U1's debt of 3 is cancelled, then 1 goes back to T1; U2's debt is another hour's and stays.
        assert debts(conn) == [("U2", D("1"))]
        assert draws(conn) == [("U1", "T1", D("5")), ("R1", "T1", D("-1"))]
        assert balances(conn) == [("T1", "paid", 50, D("4"), D("0"), D("1"))]
        # balance 5 - 8 - 1 + 4 = 0 = remaining 1 - debt 1
        assert check_grants(conn).problems == []


def _two_accounts(conn, clock) -> dict[str, int]:
    """acme: P1 expires at 12:00, so U1 (hour 10) draws it and U2 (hour 12) does not; globex runs
    into debt that its next top-up pays."""
    ids = post_at(
        conn,
        clock,
        "2026-11-01T08:00Z",
        Entry("acme", "topup", D("10"), "T1"),
        Entry("acme", "promotional_grant", D("5"), "P1", {"grant": {"expires_at": "2026-11-01T12:00Z"}}),
    )
    ids |= post_at(
        conn,
        clock,
        "2026-11-01T14:00Z",
        usage("acme", "-3", h(1, 10), "U1"),
        usage("acme", "-9", h(1, 12), "U2"),
        Entry("globex", "topup", D("1"), "G1"),
        usage("globex", "-2", h(1, 12), "V1"),
    )
    ids |= post_at(conn, clock, "2026-11-01T15:00Z", Entry("globex", "topup", D("4"), "G2"))
    return ids


def test_the_rebuild_from_the_ledger_gives_the_same_rows(acme, frozen_clock):
    with psycopg.connect(acme, autocommit=True) as conn:
        ids = _two_accounts(conn, frozen_clock)
        assert draws(conn) == [("U1", "P1", D("3")), ("U2", "T1", D("9")), ("V1", "G1", D("1")), ("V1", "G2", D("1"))]
        stored = conn.execute(
            "SELECT entry_id, grant_entry_id, amount FROM billing.grant_draws ORDER BY entry_id, id"
        ).fetchall()
        assert rebuild_draws(conn) == stored
        assert rebuild_draws(conn, ["globex"]) == [(ids["V1"], ids["G1"], D("1")), (ids["V1"], ids["G2"], D("1"))]
        report = verify_ledger(conn)
        assert report.ok and (report.grants, report.grant_draws) == (4, 4)


def superuser(url: str) -> psycopg.Connection:
    """A session that switches the triggers off, as a superuser could (tests/integration/test_verify_guards.py)."""
    conn = psycopg.connect(url, autocommit=True)
    conn.execute("SET session_replication_role = replica")
    return conn


def test_verify_fails_and_names_the_grant_when_a_draw_is_tampered_with(acme, frozen_clock):
    with psycopg.connect(acme, autocommit=True) as conn:
        ids = _two_accounts(conn, frozen_clock)
    with superuser(acme) as su:
        su.execute("UPDATE billing.grant_draws SET amount = 2 WHERE entry_id = %s", (ids["U1"],))
    code, report, err = billing(["verify"], dict(os.environ))
    assert code == 1 and "Traceback" not in err
    assert [(p["account_id"], p["kind"], p["entry_id"]) for p in report["problems"]] == [
        ("acme", "grant_draws", ids["P1"])
    ]
    assert report["problems"][0]["detail"] == (
        f"grant {ids['P1']}: entry {ids['U1']} drew 2.000000 from it, the rebuild from the ledger says 3.000000"
    )


def test_verify_fails_when_the_identity_is_broken(acme, frozen_clock):
    """globex's last debt row removed and its grant balance moved to match: draws still agree,
    but the caches and the identity balance = remaining - debt do not."""
    with psycopg.connect(acme, autocommit=True) as conn:
        ids = _two_accounts(conn, frozen_clock)
        ids |= post_at(conn, frozen_clock, "2026-11-01T16:00Z", usage("globex", "-5", h(1, 15), "V2"))  # G2 3, debt 2
        assert debts(conn) == [("V2", D("2"))]
    with superuser(acme) as su:
        su.execute("DELETE FROM billing.grant_debts WHERE entry_id = %s", (ids["V2"],))
    with psycopg.connect(acme) as conn:
        report = verify_ledger(conn)
    assert [(p.account_id, p.kind) for p in report.problems] == [("globex", "grant_debt"), ("globex", "grant_identity")]
    assert report.problems[1].detail == (
        "the balance is -2.000000, but its grants have 0.000000 left and it owes 0 of debt (0.000000 - 0 = 0.000000)"
    )


def test_a_grant_expiry_belongs_to_the_month_of_its_grant_expiry_in_sql_and_python(acme, frozen_clock):
    """Its period is the month of the grant's expires_at (UTC), not of its posting: 23:30 at -02:00
    on 30 November is 1 December in UTC."""
    from billing_pipeline.ledger import LedgerInputError
    from billing_pipeline.ledger.keys import entry_period, period_sql

    with psycopg.connect(acme, autocommit=True) as conn:
        ids = post_at(
            conn,
            frozen_clock,
            "2026-11-01T08:00Z",
            Entry("acme", "promotional_grant", D("5"), "P1", {"grant": {"expires_at": "2026-11-30T23:30:00-02:00"}}),
        )
        expiry = {"grant_entry_id": ids["P1"], "expires_at": "2026-11-30T23:30:00-02:00"}
        post_at(conn, frozen_clock, "2027-01-03T00:00Z", Entry("acme", "grant_expiry", D("-5"), "X1", expiry))
        type_, reference, created_at, period = conn.execute(
            f"SELECT type, reference, created_at, {period_sql()} FROM billing.credit_transactions "
            "WHERE idempotency_key = 'X1'"
        ).fetchone()
        assert str(period) == "2026-12-01" == str(entry_period(type_, reference, created_at))
        assert draws(conn) == [("X1", "P1", D("5"))]
        with pytest.raises(LedgerInputError, match=r"reference\['grant_entry_id'\]"):
            post_entries(conn, [Entry("acme", "grant_expiry", D("-1"), "X2", {"grant_entry_id": str(ids["P1"])})])
        with pytest.raises(LedgerInputError, match="priority must be an integer"):
            post_entries(conn, [Entry("acme", "promotional_grant", D("1"), "P2", {"grant": {"priority": "1"}})])
