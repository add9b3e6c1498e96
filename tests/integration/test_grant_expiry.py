"""Grant expiry (issue 22, point 3; docs/rules/ledger.md) against real PostgreSQL: one ``grant_expiry`` per
grant past its ``expires_at`` with credits left, exactly once under a re-run, a SIGKILL at two
points of the run and two runs at once; the lifecycle and `billing status` say when expired credits
changed an account's state; one warning per grant before it expires.

Every scenario is worked out by hand: a promotional grant (priority 10) burns before a paid top-up
(priority 50), a usage hour at or after the grant's expiry cannot draw on it, and what is left at
the expiry leaves the balance."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest

from billing_pipeline.alerts.grant_expiry import queue_grant_expiry_warnings
from billing_pipeline.cli.main import main as billing
from billing_pipeline.core.hours import Hour
from billing_pipeline.ledger import Entry, post_entries, verify_ledger
from billing_pipeline.ledger.deduction import SETTLEMENT_LOCK
from billing_pipeline.ledger.expiry import expire_due_grants, grant_identity_mismatches
from billing_pipeline.ledger.keys import grant_expiry_key, usage_key
from tests.support.kube import run
from tests.support.platform import create_accounts

D = Decimal
GRANTED_AT = datetime(2026, 11, 24, 9, tzinfo=UTC)
EXPIRES = datetime(2026, 11, 24, 13, tzinfo=UTC)


def usage(account: str, hour: datetime, amount: str) -> Entry:
    text = Hour.of(hour).text
    return Entry(
        account,
        "usage_deduction",
        -D(amount),
        usage_key(account, text, "workload_consumption"),
        {"hour": text, "usage_kind": "workload_consumption", "account_id": account},
    )


def promo(account: str, amount: str, key: str, expires: datetime | None = EXPIRES) -> Entry:
    terms = {"grant": {"expires_at": expires.isoformat()}} if expires else {}
    return Entry(account, "promotional_grant", D(amount), key, terms, reason="welcome credits", actor="tests")


def paid(account: str, amount: str, key: str, expires: datetime | None = None) -> Entry:
    reference = {"payment_reference": key, "paid": {"amount": amount, "currency": "usd"}}
    if expires:
        reference["grant"] = {"expires_at": expires.isoformat()}
    return Entry(account, "topup", D(amount), key, reference)


def seed(url: str, frozen_clock, account: str = "trial") -> int:
    """trial: paid 5 (no expiry), promotional 20 expiring 13:00; usage 3 at 10:00 (drawn from the
    promotional grant, which burns first) and 2 at 13:00 (the grant is no longer valid at that hour:
    drawn from the paid one). Returns the promotional grant's entry id."""
    create_accounts(url, account)
    frozen_clock.set(GRANTED_AT)
    with psycopg.connect(url) as conn:
        post_entries(conn, [paid(account, "5", f"pay-{account}"), promo(account, "20", f"promo-{account}")])
        frozen_clock.set(EXPIRES + timedelta(minutes=5))
        post_entries(conn, [usage(account, EXPIRES - timedelta(hours=3), "3"), usage(account, EXPIRES, "2")])
        return conn.execute(
            "SELECT id FROM billing.credit_transactions WHERE idempotency_key = %s", (f"promo-{account}",)
        ).fetchone()[0]


def expiries(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT account_id, amount, idempotency_key, reference, reason, balance_after "
            "FROM billing.credit_transactions WHERE type = 'grant_expiry' ORDER BY id"
        ).fetchall()


def grant_row(url: str, grant_id: int) -> tuple:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT drawn, expired, remaining FROM billing.grant_balances WHERE grant_entry_id = %s", (grant_id,)
        ).fetchone()


def test_an_expiry_posts_what_is_left_once_and_a_rerun_posts_nothing(db_url, frozen_clock):
    grant = seed(db_url, frozen_clock)
    assert grant_row(db_url, grant) == (D("3"), D("0"), D("17"))
    with psycopg.connect(db_url) as conn:
        # A minute before the expiry: nothing is due.
        assert expire_due_grants(conn, EXPIRES - timedelta(minutes=1)).expired == []
        first = expire_due_grants(conn, EXPIRES)  # at the expiry itself (expires_at <= now)
        second = expire_due_grants(conn, EXPIRES + timedelta(hours=1))
    assert [(e.account_id, e.grant_entry_id, e.amount, e.created) for e in first.expired] == [
        ("trial", grant, D("17.000000"), True)
    ]
    assert second.expired == []  # remaining is zero now: the re-run finds nothing due
    assert expiries(db_url) == [
        (
            "trial",
            D("-17.000000"),
            f"grant_expiry:{grant}",
            {"grant_entry_id": grant, "expires_at": "2026-11-24T13:00:00+00:00", "kind": "free"},
            "promotional credits expired",
            D("3.000000"),  # 5 + 20 - 3 - 2 - 17
        )
    ]
    assert grant_row(db_url, grant) == (D("3"), D("17"), D("0"))
    with psycopg.connect(db_url) as conn:
        assert grant_identity_mismatches(conn) == []
        assert verify_ledger(conn).ok
    assert grant_expiry_key(grant) == f"grant_expiry:{grant}"


def test_a_paid_grant_expires_with_its_own_words_and_grants_without_expiry_never_do(db_url, frozen_clock):
    create_accounts(db_url, "prepaid")
    frozen_clock.set(GRANTED_AT)
    with psycopg.connect(db_url) as conn:
        post_entries(
            conn,
            [
                paid("prepaid", "12.34", "pay-1", expires=EXPIRES),
                paid("prepaid", "7", "pay-2"),
                promo("prepaid", "4", "p", None),
            ],
        )
        result = expire_due_grants(conn, EXPIRES + timedelta(days=400))
    assert [(e.kind, e.amount) for e in result.posted] == [("paid", D("12.340000"))]
    ((account, amount, _key, reference, reason, balance),) = expiries(db_url)
    assert (account, amount, reference["kind"], reason, balance) == (
        "prepaid",
        D("-12.340000"),
        "paid",
        "paid credits expired",
        D("11.000000"),
    )


def _expire_in_child(url: str, now: datetime):
    def child() -> None:
        code = 1
        try:
            with psycopg.connect(url) as conn:
                expire_due_grants(conn, now)
            code = 0
        finally:
            os._exit(code)  # never run pytest's exit handlers in the fork

    process = multiprocessing.get_context("fork").Process(target=child)
    process.start()
    return process


def _backend_waiting(conn: psycopg.Connection, timeout: float = 30.0) -> tuple[int, str]:
    """The pid and statement of the (other) backend of this database that waits on a lock."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = conn.execute(
            "SELECT pid, query FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND wait_event_type = 'Lock'"
        ).fetchone()
        if row:
            return row[0], " ".join(row[1].split())
        time.sleep(0.05)
    raise AssertionError("no backend ever waited on the lock the test holds")


def _gone(conn: psycopg.Connection, pid: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
        assert time.monotonic() < deadline, f"backend {pid} of the killed run never went away"
        time.sleep(0.05)


# Where the killed run is held: on the account's balance row (it holds the settlement's lock and
# has read nothing yet), and on the grant's balance row (its grant_expiry entry is written, the
# draw not yet: the transaction is mid-way when the process dies).
HOLD = {
    "before_posting": (
        "SELECT 1 FROM billing.credits WHERE account_id = 'trial' FOR UPDATE",
        "SELECT c.account_id FROM billing.credits c WHERE c.account_id IN (",
    ),
    "after_the_entry_is_written": (
        "SELECT 1 FROM billing.grant_balances WHERE grant_entry_id = %(grant)s FOR UPDATE",
        "UPDATE billing.grant_balances gb SET drawn = gb.drawn + m.drawn, expired = gb.expired + m.expired",
    ),
}


@pytest.mark.parametrize("point", sorted(HOLD))
def test_a_run_sigkilled_mid_way_leaves_nothing_and_the_next_run_expires_once(db_url, frozen_clock, point):
    grant = seed(db_url, frozen_clock)
    with psycopg.connect(db_url) as holder, psycopg.connect(db_url, autocommit=True) as watcher:
        hold, held_at = HOLD[point]
        holder.execute(hold, {"grant": grant})
        child = _expire_in_child(db_url, EXPIRES + timedelta(hours=1))
        backend, statement = _backend_waiting(watcher)
        assert statement.startswith(held_at), statement  # the run is held where the test means to kill it
        os.kill(child.pid, signal.SIGKILL)
        child.join(30)
        assert child.exitcode == -signal.SIGKILL
        holder.rollback()  # the killed run's backend goes on, finds its client gone, rolls back
        _gone(watcher, backend)
    assert expiries(db_url) == []
    assert grant_row(db_url, grant) == (D("3"), D("0"), D("17"))
    with psycopg.connect(db_url) as conn:
        result = expire_due_grants(conn, EXPIRES + timedelta(hours=1))
        again = expire_due_grants(conn, EXPIRES + timedelta(hours=2))
        assert verify_ledger(conn).ok and grant_identity_mismatches(conn) == []
    assert [(e.grant_entry_id, e.amount) for e in result.posted] == [(grant, D("17.000000"))] and again.expired == []
    assert [(a, amount, key) for a, amount, key, *_ in expiries(db_url)] == [
        ("trial", D("-17.000000"), f"grant_expiry:{grant}")
    ]


def test_two_runs_at_once_post_one_expiry_per_grant(db_url, frozen_clock):
    grants = [seed(db_url, frozen_clock, account) for account in ("trial", "trial2")]
    now = EXPIRES + timedelta(hours=1)
    results: dict[int, object] = {}
    with psycopg.connect(db_url, autocommit=True) as gate:
        # Both runs start together, waiting on the settlement lock the test holds, then race.
        gate.execute("SELECT pg_advisory_lock(hashtext(%s))", (SETTLEMENT_LOCK,))

        def one(n: int) -> None:
            with psycopg.connect(db_url) as conn:
                results[n] = expire_due_grants(conn, now)

        threads = [threading.Thread(target=one, args=(n,)) for n in range(2)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while (
            gate.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event = 'advisory'"
            ).fetchone()[0]
            < 2
        ):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        gate.execute("SELECT pg_advisory_unlock(hashtext(%s))", (SETTLEMENT_LOCK,))
        for t in threads:
            t.join(60)
    posted = sorted((e.account_id, e.grant_entry_id, e.amount) for r in results.values() for e in r.posted)
    assert posted == [("trial", grants[0], D("17.000000")), ("trial2", grants[1], D("17.000000"))]
    # One run posted both; the other, serialised behind it, found nothing due.
    assert sorted(len(r.expired) for r in results.values()) == [0, 2]
    assert [(a, amount) for a, amount, *_ in expiries(db_url)] == [
        ("trial", D("-17.000000")),
        ("trial2", D("-17.000000")),
    ]


def test_the_same_expiry_twice_without_the_lock_is_one_entry(db_url, frozen_clock):
    """The key alone makes it once: the entry a run would post, posted again, is a duplicate."""
    from billing_pipeline.ledger.expiry import expiry_entry

    grant = seed(db_url, frozen_clock)
    entry = expiry_entry(grant, "trial", "free", "promotional_grant", EXPIRES, D("17"))
    with psycopg.connect(db_url) as conn:
        assert [r.created for r in post_entries(conn, [entry])] == [True]
        assert [r.created for r in post_entries(conn, [entry])] == [False]
    assert len(expiries(db_url)) == 1


# ---- the lifecycle and `billing status` say why ------------------------------------------------


def status_json(account: str, now: datetime, capsys) -> dict:
    assert billing(["status", account, "--now", now.isoformat(), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_an_account_pushed_into_grace_by_expired_promotional_credits_is_told_why(db_url, frozen_clock, capsys):
    """trial2 lives on a promotional grant: 20 expiring 13:00, paid 1. At 12:00 the lifecycle sees
    20 + 1 - 3 = 18 (healthy, threshold 10). At 14:00, after the expiry of the 17 left and usage of
    2 at 13:00 (1 from the paid grant, 1 of debt): -1, grace "because promotional credits expired".
    control: the same usage on paid credits only, into low balance by usage: no cause."""
    create_accounts(db_url, "trial2", "control")
    frozen_clock.set(GRANTED_AT)
    with psycopg.connect(db_url) as conn:
        post_entries(conn, [paid("trial2", "1", "pay-t"), promo("trial2", "20", "promo-t"), paid("control", "12", "c")])
        grant = conn.execute("SELECT id FROM billing.credit_transactions WHERE idempotency_key = 'promo-t'").fetchone()[
            0
        ]
        post_entries(conn, [usage("trial2", EXPIRES - timedelta(hours=3), "3")])
    assert run(db_url, None, EXPIRES - timedelta(hours=1)).errors == []
    frozen_clock.set(EXPIRES + timedelta(minutes=5))
    with psycopg.connect(db_url) as conn:
        post_entries(conn, [usage("trial2", EXPIRES, "2"), usage("control", EXPIRES, "3")])
        expire_due_grants(conn, EXPIRES + timedelta(hours=1))
        assert grant_identity_mismatches(conn) == []
    report = run(db_url, None, EXPIRES + timedelta(hours=1))
    assert report.errors == []
    by_account = {a.account_id: a for a in report.accounts}
    (t,) = by_account["trial2"].transitions
    assert (t.from_state.value, t.to_state.value) == ("healthy", "grace_period")
    assert t.reason == "promotional credits expired: balance -1.000000 is at or below zero"
    (c,) = by_account["control"].transitions
    assert (c.to_state.value, c.reason) == ("low_balance", "balance 9.000000 against threshold 10.000000")

    with psycopg.connect(db_url) as conn:
        detail, subject, body = conn.execute(
            "SELECT e.detail, o.subject, o.body FROM billing.lifecycle_events e, billing.notification_outbox o "
            "WHERE e.account_id = 'trial2' AND e.kind = 'transition' AND e.to_state = 'grace_period' "
            "AND o.dedupe_key = 'lifecycle:trial2:grace:1'"
        ).fetchone()
        control_detail = conn.execute(
            "SELECT detail FROM billing.lifecycle_events WHERE account_id = 'control' AND kind = 'transition'"
        ).fetchone()[0]
    expiry_id = expiries(db_url)[0]
    assert "cause" not in control_detail
    cause = detail["cause"]
    assert cause["reason"] == "promotional credits expired"
    assert [(g["grant_entry_id"], g["amount"], g["expires_at"], g["kind"]) for g in cause["credits_expired"]] == [
        (grant, "17.000000", "2026-11-24T13:00:00+00:00", "free")
    ]
    text = f"Promotional credits expired (grant {grant}: 17.000000 credits expired on 2026-11-24 13:00 UTC)."
    assert cause["text"] == text and body.startswith(text + "\n\n")
    assert subject.startswith("Account trial2: promotional credits expired, deletion on ")
    assert expiry_id[0] == "trial2"

    out = status_json("trial2", EXPIRES + timedelta(hours=1), capsys)
    assert out["state"] == "grace_period" and out["cause"]["text"] == text
    assert out["cause"]["credits_expired"][0]["amount"] == "17.000000"
    assert status_json("control", EXPIRES + timedelta(hours=1), capsys)["cause"] is None
    assert billing(["status", "trial2", "--now", (EXPIRES + timedelta(hours=1)).isoformat()]) == 0
    assert f"Why: {text}" in capsys.readouterr().out.splitlines()

    # Evaluated again: no new transition, and the cause stays with the state it explains.
    assert [a.transitions for a in run(db_url, None, EXPIRES + timedelta(hours=2)).accounts] == [[], []]
    assert status_json("trial2", EXPIRES + timedelta(hours=2), capsys)["cause"]["text"] == text


def test_an_expiry_before_the_previous_evaluation_is_not_taken_for_the_cause(db_url, frozen_clock):
    """A grant that expired (and was evaluated) yesterday does not explain today's fall into grace by usage."""
    create_accounts(db_url, "slow")
    frozen_clock.set(GRANTED_AT)
    with psycopg.connect(db_url) as conn:
        post_entries(conn, [paid("slow", "15", "pay-s"), promo("slow", "2", "promo-s")])
        expire_due_grants(conn, EXPIRES)
    assert [t.to_state.value for a in run(db_url, None, EXPIRES).accounts for t in a.transitions] == []
    with psycopg.connect(db_url) as conn:
        post_entries(conn, [usage("slow", EXPIRES + timedelta(hours=2), "16")])
    (account,) = run(db_url, None, EXPIRES + timedelta(hours=3)).accounts
    (t,) = account.transitions
    assert (t.to_state.value, t.reason) == ("grace_period", "balance -1.000000 is at or below zero")


# ---- a warning before credits expire, once per grant ------------------------------------------


def test_a_grant_expiring_within_the_warning_days_is_warned_once(db_url, frozen_clock):
    create_accounts(db_url, "soon", "later", "spent", "quiet")
    frozen_clock.set(GRANTED_AT)
    with psycopg.connect(db_url) as conn:
        conn.execute("UPDATE billing.accounts SET grant_expiry_warning_days = 0 WHERE id = 'quiet'")
        post_entries(
            conn,
            [
                promo("soon", "20", "g-soon", EXPIRES + timedelta(days=7)),  # inside 7 days of 13:00
                promo("later", "20", "g-later", EXPIRES + timedelta(days=7, minutes=1)),
                promo("spent", "2", "g-spent", EXPIRES + timedelta(days=1)),
                promo("quiet", "20", "g-quiet", EXPIRES + timedelta(days=1)),
            ],
        )
        post_entries(conn, [usage("spent", EXPIRES, "2")])  # nothing left: nothing to warn about
        grant = conn.execute("SELECT id FROM billing.credit_transactions WHERE idempotency_key = 'g-soon'").fetchone()[
            0
        ]
        assert queue_grant_expiry_warnings(conn, EXPIRES) == 1
        assert queue_grant_expiry_warnings(conn, EXPIRES) == 0  # again: once per grant
        assert queue_grant_expiry_warnings(conn, EXPIRES + timedelta(minutes=1)) == 1  # later's window opens
        assert queue_grant_expiry_warnings(conn, EXPIRES + timedelta(days=6)) == 0
        rows = conn.execute(
            "SELECT o.account_id, o.kind, o.dedupe_key, o.subject, o.body, o.payload, "
            "array_agg(d.channel || ':' || d.target ORDER BY d.channel) "
            "FROM billing.notification_outbox o JOIN billing.notification_deliveries d ON d.notification_id = o.id "
            "GROUP BY o.id ORDER BY o.id"
        ).fetchall()
        later = conn.execute("SELECT id FROM billing.credit_transactions WHERE idempotency_key = 'g-later'").fetchone()[
            0
        ]
    assert [(r[0], r[2]) for r in rows] == [
        ("soon", f"grant_expiry_warning:{grant}"),
        ("later", f"grant_expiry_warning:{later}"),
    ]
    _, kind, _, subject, body, payload, channels = rows[0]
    assert kind == "grant_expiry_warning" and channels == ["email:soon@example.test"]
    assert subject == "Satusky: 20.000000 promotional credits on account soon expire on 2026-12-01 13:00 UTC"
    assert body.startswith(
        f"Account soon has 20.000000 promotional credits left of the 20.000000 granted on 2026-11-24 (grant {grant}). "
        "They expire on 2026-12-01 13:00 UTC"
    )
    assert (payload["grant_entry_id"], payload["remaining"], payload["kind"]) == (grant, "20.000000", "free")
