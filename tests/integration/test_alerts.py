"""Balance alerts against real PostgreSQL, a real SMTP server and a real HTTP webhook receiver."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import psycopg
import pytest

from billing_pipeline.alerts.balance import evaluate_balance_alerts
from billing_pipeline.alerts.delivery import deliver_due
from billing_pipeline.notifications.outbox import enqueue_notification
from billing_pipeline.resources.notify import verify_webhook_signature
from tests.support.payments import (
    WEBHOOK_SECRET,
    configure_account,
    notify,
    post,
    set_burn_rate,
    smtp_sink,
    webhook_receiver,
)
from tests.support.platform import create_accounts

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


@pytest.fixture
def alert_db(db_url, webhook_receiver):
    create_accounts(db_url, "acme", "quiet")
    configure_account(db_url, "acme", notify_email="ops@acme.test", notify_webhook_url=webhook_receiver.url)
    post(db_url, "acme", "topup", "50", "t1")
    post(db_url, "quiet", "topup", "500", "t2")
    return db_url


def run_alerts(url, notify, now=NOW):
    with psycopg.connect(url) as conn:
        evaluated = evaluate_balance_alerts(conn, now)
        delivered = deliver_due(conn, notify, now)
    return evaluated, delivered


def assert_signed(hook):
    assert verify_webhook_signature(
        WEBHOOK_SECRET, hook.headers["X-Satusky-Timestamp"], hook.body, hook.headers["X-Satusky-Signature"]
    )
    assert not verify_webhook_signature(
        "another-secret", hook.headers["X-Satusky-Timestamp"], hook.body, hook.headers["X-Satusky-Signature"]
    )
    assert not verify_webhook_signature(
        WEBHOOK_SECRET, hook.headers["X-Satusky-Timestamp"], hook.body + b" ", hook.headers["X-Satusky-Signature"]
    )


def test_one_email_and_one_webhook_per_crossing_and_a_recovery_notice(alert_db, notify, smtp_sink, webhook_receiver):
    evaluated, _ = run_alerts(alert_db, notify)
    assert evaluated.opened == [] and smtp_sink.messages == [] and webhook_receiver.requests == []

    post(alert_db, "acme", "usage_deduction", "-42", "u1")  # 50 -> 8, threshold 10
    evaluated, delivered = run_alerts(alert_db, notify)
    assert evaluated.opened == [("acme", "low_balance", 1)]
    assert sorted(c for _, c in delivered.delivered) == ["email", "webhook"]
    [mail] = smtp_sink.messages
    assert mail["To"] == "ops@acme.test" and "low balance" in mail["Subject"]
    assert "8.000000 credits" in mail.get_content()
    [hook] = webhook_receiver.requests
    assert_signed(hook)
    doc = json.loads(hook.body)
    assert doc["kind"] == "low_balance" and doc["payload"]["balance"] == "8.000000"
    assert hook.headers["X-Satusky-Event"] == "low_balance"

    # Re-running, and falling further within the same crossing, sends nothing more.
    run_alerts(alert_db, notify)
    post(alert_db, "acme", "usage_deduction", "-3", "u2")
    evaluated, delivered = run_alerts(alert_db, notify, NOW + timedelta(hours=1))
    assert evaluated.opened == [] and delivered.delivered == []
    assert len(smtp_sink.messages) == 1 and len(webhook_receiver.requests) == 1

    post(alert_db, "acme", "topup", "20", "t3")  # 5 -> 25: recovered
    evaluated, _ = run_alerts(alert_db, notify, NOW + timedelta(hours=2))
    assert evaluated.recovered == [("acme", "low_balance", 1)]
    assert len(smtp_sink.messages) == 2 and "restored" in smtp_sink.messages[1]["Subject"]
    recovery = webhook_receiver.requests[1]
    assert_signed(recovery)
    assert json.loads(recovery.body)["kind"] == "low_balance_recovered"

    post(alert_db, "acme", "usage_deduction", "-16", "u3")  # 25 -> 9: a new crossing
    evaluated, _ = run_alerts(alert_db, notify, NOW + timedelta(hours=3))
    assert evaluated.opened == [("acme", "low_balance", 2)]
    assert len(smtp_sink.messages) == 3 and len(webhook_receiver.requests) == 3
    # "quiet" has no webhook and never crossed: it got nothing.
    assert all(env[1] == ["ops@acme.test"] for env in smtp_sink.envelopes)


def test_failed_deliveries_are_retried_later_without_duplicates(alert_db, notify, smtp_sink, webhook_receiver):
    post(alert_db, "acme", "usage_deduction", "-45", "u1")
    smtp_sink.fail_next(1)
    webhook_receiver.fail_next(2)
    _, first = run_alerts(alert_db, notify)
    assert sorted(c for _, c, _ in first.failed) == ["email", "webhook"]
    assert smtp_sink.messages == [] and webhook_receiver.requests == []
    # Not due yet (backoff), so nothing is tried.
    _, early = run_alerts(alert_db, notify, NOW + timedelta(seconds=30))
    assert early.delivered == [] and early.failed == []
    # Email now goes through; the webhook fails once more.
    _, second = run_alerts(alert_db, notify, NOW + timedelta(minutes=1))
    assert [c for _, c in second.delivered] == ["email"] and [c for _, c, _ in second.failed] == ["webhook"]
    _, third = run_alerts(alert_db, notify, NOW + timedelta(minutes=3))
    assert [c for _, c in third.delivered] == ["webhook"]
    _, fourth = run_alerts(alert_db, notify, NOW + timedelta(hours=10))
    assert fourth.delivered == [] and fourth.failed == []
    assert len(smtp_sink.messages) == 1 and len(webhook_receiver.requests) == 1
    with psycopg.connect(alert_db) as conn:
        rows = conn.execute(
            "SELECT channel, status, attempts FROM billing.notification_deliveries ORDER BY channel"
        ).fetchall()
    assert rows == [("email", "delivered", 2), ("webhook", "delivered", 3)]


def test_short_runway_warning_and_recovery(alert_db, notify, smtp_sink, webhook_receiver):
    set_burn_rate(alert_db, "acme", Decimal("2.5"))  # 50 credits / 2.5 per hour = 20 h
    evaluated, _ = run_alerts(alert_db, notify)
    assert evaluated.opened == [("acme", "short_runway", 1)]
    [mail] = smtp_sink.messages
    assert "within 24 hours" in mail["Subject"] and "about 20.00 hours" in mail.get_content()
    assert json.loads(webhook_receiver.requests[0].body)["payload"]["runway_hours"] == "20.00"
    run_alerts(alert_db, notify)
    assert len(smtp_sink.messages) == 1
    set_burn_rate(alert_db, "acme", Decimal("1"))  # 50 h
    evaluated, _ = run_alerts(alert_db, notify)
    assert evaluated.recovered == [("acme", "short_runway", 1)]
    assert len(smtp_sink.messages) == 2 and len(webhook_receiver.requests) == 2


def test_concurrent_evaluations_warn_once(alert_db, notify, smtp_sink):
    post(alert_db, "acme", "usage_deduction", "-45", "u1")
    barrier = threading.Barrier(4)
    errors = []

    def evaluate():
        try:
            with psycopg.connect(alert_db) as conn:
                barrier.wait()
                evaluate_balance_alerts(conn, NOW)
                deliver_due(conn, notify, NOW)
        except Exception as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=evaluate) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(smtp_sink.messages) == 1
    with psycopg.connect(alert_db) as conn:
        assert conn.execute("SELECT count(*) FROM billing.balance_alert_crossings").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM billing.notification_outbox").fetchone()[0] == 1


def test_enqueue_is_part_of_the_callers_transaction(alert_db):
    with psycopg.connect(alert_db) as conn:
        with pytest.raises(RuntimeError), conn.transaction():
            assert enqueue_notification(
                conn, account_id="acme", kind="grace_started", dedupe_key="g:1", subject="s", body="b", payload={"x": 1}
            )
            raise RuntimeError("decision rolled back")
        assert conn.execute("SELECT count(*) FROM billing.notification_outbox").fetchone()[0] == 0
        assert enqueue_notification(
            conn, account_id="acme", kind="grace_started", dedupe_key="g:1", subject="s", body="b", payload={}
        )
        assert not enqueue_notification(
            conn, account_id="acme", kind="grace_started", dedupe_key="g:1", subject="s", body="b", payload={}
        )
        conn.commit()
        assert conn.execute("SELECT count(*) FROM billing.notification_deliveries").fetchone()[0] == 2
