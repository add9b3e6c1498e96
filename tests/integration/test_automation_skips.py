"""Automation that is on by default does not act against integrations that are not configured
(issue 23): its schedules skip with the reason, and an unconfigured channel spends no retry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import psycopg
import pytest

from billing_pipeline.alerts.delivery import deliver_due
from billing_pipeline.notifications.outbox import enqueue_notification
from billing_pipeline.resources.kubernetes import KubernetesResource
from billing_pipeline.resources.notify import NotifyResource
from billing_pipeline.resources.stripe import StripeResource
from tests.support.payments import configure_account, smtp_sink
from tests.support.platform import create_accounts

NOW = datetime(2026, 11, 24, 10, 7, tzinfo=UTC)
INTEGRATION_VARIABLES = ("STRIPE_API_KEY", "SMTP_HOST", "SMTP_PORT", "BILLING_WEBHOOK_SECRET", "KUBECONFIG")


@pytest.fixture
def nothing_configured(monkeypatch, tmp_path):
    """The environment the demo leaves behind: no Stripe, SMTP, webhook secret or cluster."""
    for name in (*INTEGRATION_VARIABLES, "KUBERNETES_SERVICE_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kube/config either


def tick(schedule_name: str, **resources):
    from billing_pipeline.definitions import defs

    schedule = defs.get_schedule_def(schedule_name)
    context = dg.build_schedule_context(scheduled_execution_time=NOW, resources=resources)
    return schedule.evaluate_tick(context)


def test_default_on_schedules_skip_with_the_reason_when_their_integration_is_missing(nothing_configured):
    topups = tick("auto_topup_retry_schedule", stripe=StripeResource())
    assert topups.run_requests == []
    assert topups.skip_message == "skipped: STRIPE_API_KEY is not set: no auto top-up can be charged"
    notices = tick("notification_retry_schedule", notify=NotifyResource())
    assert notices.run_requests == []
    assert notices.skip_message == (
        "skipped: SMTP_HOST is not set and BILLING_WEBHOOK_SECRET is not set: no notice can be delivered"
    )
    deadlines = tick("grace_deadline_schedule", kubernetes=KubernetesResource())
    assert deadlines.run_requests == []
    assert deadlines.skip_message == (
        "skipped: no Kubernetes cluster is configured (KUBECONFIG is not set, no ~/.kube/config, not in a pod): "
        "no deadline can be acted on"
    )


def test_the_same_schedules_run_once_configured(nothing_configured, monkeypatch, tmp_path):
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_x")
    monkeypatch.setenv("SMTP_HOST", "127.0.0.1")  # one channel is enough to deliver
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\n")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    for name, resources in (
        ("auto_topup_retry_schedule", {"stripe": StripeResource()}),
        ("notification_retry_schedule", {"notify": NotifyResource()}),
        ("grace_deadline_schedule", {"kubernetes": KubernetesResource()}),
    ):
        (request,) = tick(name, **resources).run_requests
        assert request.tags["billing/now"] == NOW.isoformat()


def _queue(conn, key: str) -> None:
    enqueue_notification(
        conn, account_id="acme", kind="low_balance", dedupe_key=key, subject=f"s {key}", body="b", payload={}
    )


def deliveries(conn) -> list[tuple]:
    return conn.execute(
        "SELECT channel, status, attempts, last_error FROM billing.notification_deliveries ORDER BY channel"
    ).fetchall()


def test_an_unconfigured_channel_spends_no_retry(db_url, nothing_configured, smtp_sink):
    create_accounts(db_url, "acme")
    configure_account(db_url, "acme", notify_webhook_url="http://127.0.0.1:9/hook")
    with psycopg.connect(db_url) as conn:
        _queue(conn, "crossing-1")
        conn.commit()
        # Nothing configured: no channel is attempted, both keep every retry.
        for minutes in (0, 10, 20, 30):
            result = deliver_due(conn, NotifyResource(), NOW + timedelta(minutes=minutes))
            assert result.delivered == [] and result.failed == []
        assert result.skipped == {
            "email": ("SMTP_HOST is not set", 1),
            "webhook": ("BILLING_WEBHOOK_SECRET is not set", 1),
        }
        assert "email skipped: SMTP_HOST is not set (1 pending, no retry spent)" in result.summary()
        assert deliveries(conn) == [("email", "pending", 0, None), ("webhook", "pending", 0, None)]

        # Email configured later: it is delivered on its first attempt; the webhook still waits.
        email_only = NotifyResource(smtp_host=smtp_sink.host, smtp_port=smtp_sink.port)
        result = deliver_due(conn, email_only, NOW + timedelta(hours=1))
        assert [channel for _, channel in result.delivered] == ["email"]
        assert result.skipped == {"webhook": ("BILLING_WEBHOOK_SECRET is not set", 1)}
        assert deliveries(conn) == [("email", "delivered", 1, None), ("webhook", "pending", 0, None)]
    assert [m["Subject"] for m in smtp_sink.messages] == ["s crossing-1"]
