"""A failed ERROR check shows on the run (``billing/checks=failed``), as ``billing run`` counts it;
the deliveries have their check (WARN while a retry is left, ERROR once the last attempt is spent)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import psycopg
from dagster._core.events import DagsterEventType

from billing_pipeline.alerts.defs import notification_deliveries
from billing_pipeline.alerts.delivery import MAX_ATTEMPTS
from billing_pipeline.core.clock import CLOCK_TAG
from billing_pipeline.core.runs import CHECKS_TAG
from billing_pipeline.notifications.outbox import enqueue_notification
from billing_pipeline.orchestration.run_checks import failed_checks_sensor, tag_failed_checks
from billing_pipeline.resources import PostgresResource
from tests.support.payments import configure_account, notify, smtp_sink, webhook_receiver
from tests.support.platform import create_accounts

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


def _deliver(db_url, notify, instance, now):
    result = dg.materialize(
        [notification_deliveries],
        instance=instance,
        resources={"postgres": PostgresResource(database_url=db_url), "notify": notify},
        tags={CLOCK_TAG: now.isoformat()},
    )
    (evaluation,) = result.get_asset_check_evaluations()
    (materialization,) = result.get_asset_materialization_events()
    rows = materialization.materialization.metadata["dagster/row_count"].value
    return result, evaluation, rows


def _run_success_context(instance, run_id):
    (record,) = instance.get_records_for_run(run_id, of_type=DagsterEventType.RUN_SUCCESS).records
    return dg.build_run_status_sensor_context(
        sensor_name="failed_checks_sensor",
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(run_id),
        dagster_event=record.event_log_entry.dagster_event,
    )


def test_deliveries_check_warns_then_fails_the_run_once_a_channel_gives_up(
    db_url,
    notify,
    smtp_sink,
    frozen_clock,
):
    frozen_clock.set(NOW)
    create_accounts(db_url, "acme")
    configure_account(db_url, "acme", notify_email="ops@acme.test")
    with psycopg.connect(db_url) as conn:
        enqueue_notification(
            conn,
            account_id="acme",
            kind="low_balance",
            dedupe_key="low:acme:1",
            subject="Low balance",
            body="Your balance is low.",
            payload={},
        )
        conn.commit()
    instance = dg.DagsterInstance.ephemeral()

    # The SMTP server refuses once: a retry is left, so the check warns and the run stays untagged.
    smtp_sink.fail_next(1)
    result, evaluation, rows = _deliver(db_url, notify, instance, NOW)
    assert result.success and not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert rows == 1
    assert tag_failed_checks(instance, result.run_id) == []
    assert CHECKS_TAG not in instance.get_run_by_id(result.run_id).tags

    # The last attempt fails: ERROR. The run succeeded, and the sensor tags it failed, as the CLI counts it.
    with psycopg.connect(db_url) as conn:
        conn.execute("UPDATE billing.notification_deliveries SET attempts = %s", (MAX_ATTEMPTS - 1,))
        conn.commit()
    smtp_sink.fail_next(1)
    result, evaluation, rows = _deliver(db_url, notify, instance, NOW + timedelta(days=1))
    assert result.success and not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert evaluation.metadata["given_up"].value == [[1, "email"]]
    assert CHECKS_TAG not in instance.get_run_by_id(result.run_id).tags
    skip = failed_checks_sensor(_run_success_context(instance, result.run_id))
    assert instance.get_run_by_id(result.run_id).tags[CHECKS_TAG] == "failed"
    assert "notification_deliveries:deliveries_succeeded" in skip.skip_message
    assert smtp_sink.messages == []


def test_a_run_whose_channels_all_deliver_passes_and_stays_untagged(
    db_url,
    notify,
    smtp_sink,
    frozen_clock,
):
    frozen_clock.set(NOW)
    create_accounts(db_url, "acme")
    configure_account(db_url, "acme", notify_email="ops@acme.test")
    with psycopg.connect(db_url) as conn:
        enqueue_notification(
            conn,
            account_id="acme",
            kind="low_balance",
            dedupe_key="low:acme:1",
            subject="Low balance",
            body="Your balance is low.",
            payload={},
        )
        conn.commit()
    instance = dg.DagsterInstance.ephemeral()
    result, evaluation, rows = _deliver(db_url, notify, instance, NOW)
    assert evaluation.passed and rows == 1 and len(smtp_sink.messages) == 1
    skip = failed_checks_sensor(_run_success_context(instance, result.run_id))
    assert CHECKS_TAG not in instance.get_run_by_id(result.run_id).tags
    assert skip.skip_message.endswith("no ERROR check failed")
