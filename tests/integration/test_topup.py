"""Stripe auto top-up against real PostgreSQL and localstripe on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import psycopg
import pytest

from billing_pipeline.ledger import balance_of, verify_ledger
from billing_pipeline.payments.topup import DUPLICATE_LOOKBACK, IN_FLIGHT_MARGIN, IN_FLIGHT_WINDOW, run_auto_topup
from billing_pipeline.resources.stripe import REQUEST_TIMEOUT, StripeResource
from devkit.emulators.stripe_emulator import create_customer_with_card, payment_intents
from tests.support.payments import configure_account, post, stripe_emulator
from tests.support.platform import create_accounts
from tests.support.stripe_proxy import DelayingProxy

D = Decimal
NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
DECLINING_CARD = "4000000000000341"


@pytest.fixture
def stripe_res(stripe_emulator):
    return StripeResource(api_key=stripe_emulator.api_key, api_base=stripe_emulator.url)


def enable(url, emulator, account, card="4242424242424242", amount="25", threshold="10", limit=None):
    customer, method = create_customer_with_card(emulator.url, f"{account}@example.test", card)
    configure_account(
        url,
        account,
        auto_topup_enabled=True,
        auto_topup_amount=D(amount),
        auto_topup_threshold=D(threshold),
        auto_topup_monthly_limit=None if limit is None else D(limit),
        stripe_customer_id=customer,
        stripe_payment_method_id=method,
    )
    return customer, method


def auto_topups(url):
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT account_id, amount, idempotency_key, reference FROM billing.credit_transactions "
            "WHERE type = 'auto_topup' ORDER BY id"
        ).fetchall()


def attempts(url):
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT attempt_key, status, failure_code FROM billing.topup_attempts ORDER BY id"
        ).fetchall()


def outbox_kinds(url):
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT kind FROM billing.notification_outbox ORDER BY id")]


def test_a_successful_top_up_credits_once(db_url, stripe_emulator, stripe_res):
    create_accounts(db_url, "acme", "rich", "off")
    enable(db_url, stripe_emulator, "acme")
    enable(db_url, stripe_emulator, "rich")
    post(db_url, "acme", "topup", "5", "t1")  # 5 <= 10: charge
    post(db_url, "rich", "topup", "100", "t2")  # above threshold: nothing
    result = run_auto_topup(db_url, stripe_res, NOW)
    assert [(a, amt) for a, amt, _ in result.charged] == [("acme", D("25.00"))]
    [pi] = payment_intents(stripe_emulator.url)
    assert pi["status"] == "succeeded" and pi["amount"] == 2500
    assert pi["metadata"] == {"satusky_attempt_key": "auto_topup:acme:1", "satusky_account_id": "acme"}
    [entry] = auto_topups(db_url)
    assert entry[:3] == ("acme", D("25"), "auto_topup:acme:1") and entry[3]["payment_intent"] == pi["id"]
    # The balance is above the threshold now; running again charges nothing.
    again = run_auto_topup(db_url, stripe_res, NOW + timedelta(minutes=5))
    assert again.charged == [] and len(payment_intents(stripe_emulator.url)) == 1
    with psycopg.connect(db_url) as conn:
        assert balance_of(conn, "acme") == D("30")
        assert verify_ledger(conn).ok
    assert outbox_kinds(db_url) == ["auto_topup_succeeded"]


# A plain auto top-up pass in its own process: no hook, the production code as it ships.
TOPUP_RUN = textwrap.dedent("""
    import sys
    from datetime import datetime, timezone
    from billing_pipeline.payments.topup import run_auto_topup
    from billing_pipeline.resources.stripe import StripeResource

    run_auto_topup(sys.argv[1], StripeResource(api_key=sys.argv[2], api_base=sys.argv[3]),
                   datetime(2026, 11, 25, 12, tzinfo=timezone.utc))
""")


def _blocked_backends(conn, database: str) -> list[str]:
    """Queries of other sessions on ``database`` waiting for a row lock."""
    return [
        r[0]
        for r in conn.execute(
            "SELECT query FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid() "
            "AND wait_event_type = 'Lock'",
            (database,),
        )
    ]


def test_killed_right_after_stripe_answered_still_credits_once(db_url, stripe_emulator, stripe_res):
    create_accounts(db_url, "acme")
    enable(db_url, stripe_emulator, "acme")
    post(db_url, "acme", "topup", "1", "t1")
    # The test holds acme's balance row, so the run, once Stripe has answered, waits to post the
    # credit; it is SIGKILLed there, between Stripe's charge and anything recorded of it.
    with psycopg.connect(db_url) as holder:
        holder.execute("SELECT 1 FROM billing.credits WHERE account_id = 'acme' FOR UPDATE")
        proc = subprocess.Popen(
            [sys.executable, "-c", TOPUP_RUN, db_url, stripe_emulator.api_key, stripe_emulator.url],
            stderr=subprocess.PIPE,
            text=True,
            cwd=os.getcwd(),
        )
        try:
            deadline = time.monotonic() + 60
            with psycopg.connect(db_url, autocommit=True) as watcher:
                while not _blocked_backends(watcher, holder.info.dbname):
                    assert proc.poll() is None, proc.stderr.read()
                    assert time.monotonic() < deadline, "the run never reached the ledger"
                    time.sleep(0.05)
            assert [p["status"] for p in payment_intents(stripe_emulator.url)] == ["succeeded"]  # Stripe charged
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.wait(timeout=30) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stderr.close()
        holder.rollback()
    assert auto_topups(db_url) == [] and attempts(db_url) == [("auto_topup:acme:1", "pending", None)]  # not recorded
    result = run_auto_topup(db_url, stripe_res, NOW + timedelta(minutes=1))
    assert result.recovered == [("acme", "auto_topup:acme:1")] and len(result.charged) == 1
    assert len(payment_intents(stripe_emulator.url)) == 1  # no second charge
    assert [r[:3] for r in auto_topups(db_url)] == [("acme", D("25"), "auto_topup:acme:1")]
    run_auto_topup(db_url, stripe_res, NOW + timedelta(minutes=2))
    assert len(auto_topups(db_url)) == 1 and len(payment_intents(stripe_emulator.url)) == 1
    with psycopg.connect(db_url) as conn:
        assert balance_of(conn, "acme") == D("26")


def test_killed_before_stripe_was_called_charges_once_on_the_next_run(db_url, stripe_emulator, stripe_res):
    create_accounts(db_url, "acme")
    _, _method = enable(db_url, stripe_emulator, "acme")
    post(db_url, "acme", "topup", "1", "t1")
    with psycopg.connect(db_url) as conn:  # what a run that died before calling Stripe leaves behind
        conn.execute(
            "INSERT INTO billing.topup_attempts (account_id, attempt_key, attempt_no, amount, month, "
            "stripe_customer_id, stripe_payment_method_id, created_at) SELECT 'acme', 'auto_topup:acme:1', 1, "
            "25, '2026-11-01', stripe_customer_id, stripe_payment_method_id, %s FROM billing.accounts "
            "WHERE id = 'acme'",
            (NOW,),
        )
    # Stripe does not know it, but its request may still be in flight until the window has passed.
    early = run_auto_topup(db_url, stripe_res, NOW + IN_FLIGHT_WINDOW - timedelta(seconds=1))
    assert early.recovered == [] and [u[0] for u in early.unresolved] == ["acme"]
    assert payment_intents(stripe_emulator.url) == [] and auto_topups(db_url) == []
    result = run_auto_topup(db_url, stripe_res, NOW + IN_FLIGHT_WINDOW)
    assert result.recovered == [("acme", "auto_topup:acme:1")]
    assert len(payment_intents(stripe_emulator.url)) == 1 and len(auto_topups(db_url)) == 1


def test_concurrent_runs_charge_once(db_url, stripe_emulator, stripe_res):
    create_accounts(db_url, "acme")
    enable(db_url, stripe_emulator, "acme")
    post(db_url, "acme", "topup", "1", "t1")
    barrier, errors = threading.Barrier(3), []

    def run():
        try:
            barrier.wait()
            run_auto_topup(db_url, stripe_res, NOW)
        except Exception as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(payment_intents(stripe_emulator.url)) == 1 and len(auto_topups(db_url)) == 1


def test_declining_card_notifies_backs_off_and_pauses_after_three(db_url, stripe_emulator, stripe_res):
    create_accounts(db_url, "acme")
    enable(db_url, stripe_emulator, "acme", card=DECLINING_CARD)
    post(db_url, "acme", "topup", "2", "t1")
    first = run_auto_topup(db_url, stripe_res, NOW)
    assert first.failed == [("acme", "card_declined")] and first.paused == []
    assert outbox_kinds(db_url) == ["auto_topup_failed"]
    # Within the backoff nothing is tried.
    early = run_auto_topup(db_url, stripe_res, NOW + timedelta(minutes=30))
    assert early.failed == [] and len(payment_intents(stripe_emulator.url)) == 1
    second = run_auto_topup(db_url, stripe_res, NOW + timedelta(hours=1))
    assert second.failed == [("acme", "card_declined")]
    assert run_auto_topup(db_url, stripe_res, NOW + timedelta(hours=2)).failed == []  # 2 h backoff now
    third = run_auto_topup(db_url, stripe_res, NOW + timedelta(hours=3))
    assert third.failed == [("acme", "card_declined")] and third.paused == ["acme"]
    assert outbox_kinds(db_url) == ["auto_topup_failed"] * 3 + ["auto_topup_paused"]
    # Paused: no more charges, however long we wait.
    later = run_auto_topup(db_url, stripe_res, NOW + timedelta(days=3))
    assert later.failed == [] and ("acme", "paused after repeated failures until the card changes") in later.skipped
    assert len(payment_intents(stripe_emulator.url)) == 3 and auto_topups(db_url) == []
    assert [a[1:] for a in attempts(db_url)] == [("failed", "card_declined")] * 3
    # A new card lifts the pause and the top-up goes through.
    _customer, _ = enable(db_url, stripe_emulator, "acme")
    resumed = run_auto_topup(db_url, stripe_res, NOW + timedelta(days=3, hours=1))
    assert resumed.resumed == ["acme"] and [c[0] for c in resumed.charged] == ["acme"]
    assert len(auto_topups(db_url)) == 1


def test_authentication_required_counts_as_a_failure(db_url, stripe_emulator, stripe_res):
    create_accounts(db_url, "acme")
    enable(db_url, stripe_emulator, "acme", card="4000002500003155")
    post(db_url, "acme", "topup", "2", "t1")
    result = run_auto_topup(db_url, stripe_res, NOW)
    assert result.failed == [("acme", "authentication_required")] and auto_topups(db_url) == []


def test_monthly_limit_is_never_exceeded(db_url, stripe_emulator, stripe_res):
    create_accounts(db_url, "acme")
    enable(db_url, stripe_emulator, "acme", amount="25", limit="60")
    post(db_url, "acme", "topup", "5", "t1")
    for i, hours in enumerate((0, 1, 2, 3)):
        run_auto_topup(db_url, stripe_res, NOW + timedelta(hours=hours))
        post(db_url, "acme", "usage_deduction", "-30", f"u{i}")  # spend it all again
    # 25 + 25 = 50 <= 60; a third 25 would make 75 > 60.
    assert [r[1] for r in auto_topups(db_url)] == [D("25"), D("25")]
    assert sum(p["amount"] for p in payment_intents(stripe_emulator.url)) == 5000
    assert outbox_kinds(db_url).count("auto_topup_monthly_limit") == 1
    # A new month starts a new allowance.
    december = run_auto_topup(db_url, stripe_res, datetime(2026, 12, 1, 1, tzinfo=UTC))
    assert [c[0] for c in december.charged] == ["acme"]


def test_a_card_stripe_does_not_know_fails_cleanly_instead_of_staying_pending(db_url, stripe_emulator, stripe_res):
    create_accounts(db_url, "acme")
    enable(db_url, stripe_emulator, "acme")
    configure_account(db_url, "acme", stripe_payment_method_id="pm_gone")
    post(db_url, "acme", "topup", "1", "t1")
    result = run_auto_topup(db_url, stripe_res, NOW)
    assert len(result.failed) == 1 and result.unresolved == []
    assert attempts(db_url)[0][1] == "failed" and outbox_kinds(db_url) == ["auto_topup_failed"]


def test_without_a_stripe_key_nothing_is_recorded(db_url, stripe_emulator, monkeypatch):
    from billing_pipeline.core.errors import ConfigurationError

    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    create_accounts(db_url, "acme")
    enable(db_url, stripe_emulator, "acme")
    post(db_url, "acme", "topup", "1", "t1")
    with pytest.raises(ConfigurationError, match="STRIPE_API_KEY"):
        run_auto_topup(db_url, StripeResource(api_base=stripe_emulator.url), NOW)
    assert attempts(db_url) == []


# --- issue 21, point 5: a charge in flight is never repeated ---

# The proxy holds each PaymentIntent creation this long before Stripe sees it, unless the test
# releases it sooner (once it has seen what the re-run does meanwhile).
HOLD_SECONDS = 60


def _advisory_locks_released(url: str, timeout: float = 30) -> None:
    """A SIGKILLed run's connection (and its account lock) ends when PostgreSQL notices."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        # This test's database only: the server is shared with other tests' databases.
        while conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ).fetchone()[0]:
            assert time.monotonic() < deadline, "the killed run's advisory lock was never released"
            time.sleep(0.05)


def test_the_in_flight_window_is_the_clients_timeout_plus_a_margin():
    assert timedelta(seconds=40) == REQUEST_TIMEOUT and timedelta(minutes=5) == IN_FLIGHT_MARGIN
    assert IN_FLIGHT_WINDOW == REQUEST_TIMEOUT + IN_FLIGHT_MARGIN
    client = StripeResource(api_key="sk_test_x")._client()
    assert client._requestor._client._timeout == (10.0, 30.0)  # explicit, not the library's 80 s


def test_a_run_killed_while_its_charge_is_in_flight_is_not_charged_again(db_url, stripe_emulator):
    """The PaymentIntent creation held in front of Stripe, the run SIGKILLed while it waits, an
    immediate re-run: one PaymentIntent for the attempt key, and once the window is over, one credit."""
    create_accounts(db_url, "race")
    enable(db_url, stripe_emulator, "race")
    post(db_url, "race", "topup", "1", "t1")
    with DelayingProxy(stripe_emulator.url, HOLD_SECONDS) as proxy:
        via_proxy = StripeResource(api_key=stripe_emulator.api_key, api_base=proxy.url)
        proc = subprocess.Popen(
            [sys.executable, "-c", TOPUP_RUN, db_url, stripe_emulator.api_key, proxy.url],
            stderr=subprocess.PIPE,
            text=True,
            cwd=os.getcwd(),
        )
        try:
            proxy.wait_for("received")  # the charge is on its way, held by the proxy
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.wait(timeout=30) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stderr.close()
        assert attempts(db_url) == [("auto_topup:race:1", "pending", None)]
        _advisory_locks_released(db_url)

        # The immediate re-run (3 s later by the run's clock): Stripe does not know the attempt yet,
        # and it is not charged again.
        rerun = run_auto_topup(db_url, via_proxy, NOW + timedelta(seconds=3))
        assert rerun.charged == [] and rerun.recovered == [] and rerun.duplicates == []
        [(account, why)] = rerun.unresolved
        assert account == "race" and why.startswith("auto_topup:race:1: its charge request of 2026-11-25T12:00:00")
        assert "may still be in flight" in why and (NOW + IN_FLIGHT_WINDOW).isoformat() in why
        assert proxy.count("received") == 1  # nothing else was sent to create a PaymentIntent

        proxy.release()
        proxy.wait_for("forwarded", timeout=30)  # the killed run's request reaches Stripe
        [pi] = payment_intents(stripe_emulator.url)
        assert pi["status"] == "succeeded" and pi["metadata"]["satusky_attempt_key"] == "auto_topup:race:1"
        assert auto_topups(db_url) == []

        # After the window the next run finds it and credits it once; later runs change nothing.
        after = run_auto_topup(db_url, via_proxy, NOW + IN_FLIGHT_WINDOW + timedelta(seconds=1))
        assert after.recovered == [("race", "auto_topup:race:1")] and after.duplicates == []
        assert [(a, amount, p) for a, amount, p in after.charged] == [("race", D("25"), pi["id"])]
        run_auto_topup(db_url, via_proxy, NOW + timedelta(hours=1))
        assert proxy.count("received") == 1
    assert [p["id"] for p in payment_intents(stripe_emulator.url)] == [pi["id"]]
    assert [r[:3] for r in auto_topups(db_url)] == [("race", D("25"), "auto_topup:race:1")]
    assert attempts(db_url) == [("auto_topup:race:1", "succeeded", None)]
    with psycopg.connect(db_url) as conn:
        assert balance_of(conn, "race") == D("26")


def test_a_recovery_charge_in_flight_is_not_repeated_either(db_url, stripe_emulator):
    """Past the window, a run charges the attempt again and is killed during that request: the
    window starts again from that request (charge_requested_at), not from the attempt's creation."""
    create_accounts(db_url, "race")
    enable(db_url, stripe_emulator, "race")
    post(db_url, "race", "topup", "1", "t1")
    with psycopg.connect(db_url) as conn:  # a run that died before calling Stripe
        conn.execute(
            "INSERT INTO billing.topup_attempts (account_id, attempt_key, attempt_no, amount, month, "
            "stripe_customer_id, stripe_payment_method_id, created_at) SELECT 'race', 'auto_topup:race:1', 1, "
            "25, '2026-11-01', stripe_customer_id, stripe_payment_method_id, %s FROM billing.accounts "
            "WHERE id = 'race'",
            (NOW - timedelta(hours=1),),
        )
    with DelayingProxy(stripe_emulator.url, HOLD_SECONDS) as proxy:
        via_proxy = StripeResource(api_key=stripe_emulator.api_key, api_base=proxy.url)
        proc = subprocess.Popen(
            [sys.executable, "-c", TOPUP_RUN, db_url, stripe_emulator.api_key, proxy.url],
            stderr=subprocess.PIPE,
            text=True,
            cwd=os.getcwd(),
        )
        try:
            proxy.wait_for("received")
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.wait(timeout=30) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stderr.close()
        _advisory_locks_released(db_url)
        rerun = run_auto_topup(db_url, via_proxy, NOW + timedelta(seconds=3))
        assert rerun.charged == [] and [u[0] for u in rerun.unresolved] == ["race"]
        assert proxy.count("received") == 1
        proxy.release()
        proxy.wait_for("forwarded", timeout=30)
    assert len(payment_intents(stripe_emulator.url)) == 1
    after = run_auto_topup(
        db_url, StripeResource(api_key=stripe_emulator.api_key, api_base=stripe_emulator.url), NOW + IN_FLIGHT_WINDOW
    )
    assert after.recovered == [("race", "auto_topup:race:1")]
    assert len(payment_intents(stripe_emulator.url)) == 1 and len(auto_topups(db_url)) == 1


def test_an_attempt_key_with_two_payment_intents_is_reported_and_fails_the_check(
    db_url, stripe_emulator, stripe_res, monkeypatch, tmp_path
):
    """What the unguarded recovery left behind: two succeeded PaymentIntents for one attempt."""
    import dagster as dg

    from billing_pipeline.payments.defs import auto_topups as auto_topups_asset
    from billing_pipeline.resources.postgres import PostgresResource

    create_accounts(db_url, "race", "calm")
    customer, method = enable(db_url, stripe_emulator, "race")
    enable(db_url, stripe_emulator, "calm")
    post(db_url, "race", "topup", "1", "t1")
    post(db_url, "calm", "topup", "1", "t2")
    first = run_auto_topup(db_url, stripe_res, NOW)
    assert sorted(c[0] for c in first.charged) == ["calm", "race"] and first.duplicates == []
    # The second charge of auto_topup:race:1, as the issue found it on the emulator.
    extra = stripe_res.charge_off_session(
        customer_id=customer,
        payment_method_id=method,
        amount_cents=2500,
        idempotency_key="auto_topup:race:1",
        metadata={"satusky_attempt_key": "auto_topup:race:1", "satusky_account_id": "race"},
    )
    assert extra.status == "succeeded"
    intents = sorted(
        p["id"] for p in payment_intents(stripe_emulator.url) if p["metadata"]["satusky_account_id"] == "race"
    )
    assert len(intents) == 2

    later = run_auto_topup(db_url, stripe_res, NOW + timedelta(hours=1))
    assert later.duplicates == [("race", "auto_topup:race:1", intents)] and later.charged == []
    assert "1 attempt(s) charged more than once" in later.summary()

    # In the cycle: the asset check fails (ERROR), naming the key and both PaymentIntents.
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    result = dg.materialize(
        [auto_topups_asset],
        resources={"postgres": PostgresResource(database_url=db_url), "stripe": stripe_res},
        tags={"billing/now": (NOW + timedelta(hours=2)).isoformat()},
        raise_on_error=False,
    )
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["every_topup_settled"].passed
    twice = checks["one_payment_intent_per_attempt"]
    assert not twice.passed and twice.severity == dg.AssetCheckSeverity.ERROR
    assert twice.description == f"race: auto_topup:race:1 charged 2 times ({', '.join(intents)})"

    # A week after the last charge the customer is no longer listed every run.
    quiet = run_auto_topup(db_url, stripe_res, NOW + DUPLICATE_LOOKBACK + timedelta(minutes=1))
    assert quiet.duplicates == []
