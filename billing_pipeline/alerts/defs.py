"""Dagster definitions of the alerts domain.

* ``alerts/balance_alerts``: opens and closes low-balance and short-runway crossings for every
  account and queues their notices (``alerts.balance``), after the hour's settlement, top-ups and
  the balances mart (its burn rate); and queues one warning per credit grant that expires within its
  account's ``grant_expiry_warning_days`` (``alerts.grant_expiry``).
* ``alerts/notification_deliveries``: delivers every due notice of the outbox by email and
  signed webhook (``alerts.delivery``): the alerts', the top-ups' and the lifecycle's, so it
  runs last in the cycle.
* ``balance_alert_job``: both. ``notification_retry_schedule`` (on by default) runs it every
  10 minutes, so failed deliveries are retried on their backoff even when no data moves; it skips
  with the reason while no channel is configured. A channel that is not configured is never
  attempted: its deliveries keep their retries (``alerts.delivery``).
"""

import dagster as dg

from billing_pipeline.alerts.balance import evaluate_balance_alerts
from billing_pipeline.alerts.delivery import deliver_due
from billing_pipeline.alerts.grant_expiry import queue_grant_expiry_warnings
from billing_pipeline.core.asset_keys import (
    ACCOUNT_LIFECYCLE,
    AUTO_TOPUPS,
    BALANCE_ALERTS,
    GRANT_EXPIRY,
    LEDGER,
    NOTIFICATION_DELIVERIES,
)
from billing_pipeline.core.clock import CLOCK_TAG, run_clock
from billing_pipeline.core.ownership import BILLING_OWNERS
from billing_pipeline.core.partitions import latest_hour_of
from billing_pipeline.core.runs import JOB_TAGS
from billing_pipeline.resources.notify import NotifyResource
from billing_pipeline.resources.postgres import PostgresResource
from billing_pipeline.transform.assets import dbt_model_key

ACCOUNT_BALANCES = dbt_model_key("fct_account_balances")
DELIVERIES_CHECK = "deliveries_succeeded"


@dg.asset(
    key=BALANCE_ALERTS,
    # Top-ups first: a balance the saved card restored needs no low-balance warning.
    deps=[latest_hour_of(LEDGER), GRANT_EXPIRY, AUTO_TOPUPS, latest_hour_of(ACCOUNT_BALANCES)],
    group_name="alerts",
    kinds={"postgres"},
    owners=BILLING_OWNERS,
    description="billing.balance_alert_crossings: low-balance and short-runway warnings, once per crossing, "
    "with a recovery notice, and one warning per credit grant before it expires; notices are queued in "
    "billing.notification_outbox.",
)
def balance_alerts(context: dg.AssetExecutionContext, postgres: PostgresResource) -> dg.MaterializeResult:
    now = run_clock(context)
    with postgres.connect(autocommit=True) as conn:
        alerts = evaluate_balance_alerts(conn, now)
        expiry_warnings = queue_grant_expiry_warnings(conn, now)
    context.log.info(alerts.summary())
    context.log.info(f"grant expiry warnings: {expiry_warnings} queued")
    return dg.MaterializeResult(
        metadata={
            "now": now.isoformat(),
            "dagster/row_count": len(alerts.opened) + len(alerts.recovered),  # crossings opened or closed
            "crossings_opened": dg.MetadataValue.json([list(c) for c in alerts.opened]),
            "crossings_recovered": dg.MetadataValue.json([list(c) for c in alerts.recovered]),
            "notifications_queued": alerts.queued,
            "burn_rate_source": alerts.runway_source,
            "grant_expiry_warnings_queued": expiry_warnings,
        }
    )


@dg.asset(
    key=NOTIFICATION_DELIVERIES,
    deps=[BALANCE_ALERTS, AUTO_TOPUPS, ACCOUNT_LIFECYCLE],
    group_name="alerts",
    kinds={"email", "postgres"},
    owners=BILLING_OWNERS,
    description="Deliveries of billing.notification_outbox by email and HMAC-signed webhook, each channel "
    "recorded, retried with backoff, never re-sent once delivered.",
    check_specs=[
        dg.AssetCheckSpec(
            DELIVERIES_CHECK,
            asset=NOTIFICATION_DELIVERIES,
            description="Every channel due in the run was delivered: WARN when a failed one will be retried, ERROR "
            "when one has used its last attempt (a person must look at it).",
        )
    ],
)
def notification_deliveries(
    context: dg.AssetExecutionContext, postgres: PostgresResource, notify: NotifyResource
) -> dg.MaterializeResult:
    now = run_clock(context)
    with postgres.connect(autocommit=True) as conn:
        delivery = deliver_due(conn, notify, now)
        given_up = exhausted_channels(conn, delivery.failed)
    context.log.info(delivery.summary())
    for nid, channel, error in delivery.failed:
        context.log.warning(f"notification {nid} by {channel} failed, will retry: {error}")
    for channel, (why, waiting) in delivery.skipped.items():
        context.log.info(f"{channel} skipped: {why}; {waiting} delivery(ies) left pending, no retry spent")
    return dg.MaterializeResult(
        check_results=[deliveries_check(delivery.failed, given_up)],
        metadata={
            "now": now.isoformat(),
            **{f"{ch}_channel": f"skipped: {why} ({n} pending)" for ch, (why, n) in delivery.skipped.items()},
            "dagster/row_count": len(delivery.delivered) + len(delivery.failed),  # channel rows updated
            "delivered": len(delivery.delivered),
            "delivery_failures": len(delivery.failed),
            "failures": dg.MetadataValue.json([[nid, channel, error] for nid, channel, error in delivery.failed]),
        },
    )


def exhausted_channels(conn, failed: list[tuple[int, str, str]]) -> list[tuple[int, str]]:
    """Of the channels that failed, those marked ``failed``: their last attempt is spent."""
    if not failed:
        return []
    rows = conn.execute(
        "SELECT notification_id, channel FROM billing.notification_deliveries WHERE status = 'failed' "
        "AND (notification_id, channel) IN (SELECT * FROM unnest(%s::bigint[], %s::text[])) ORDER BY 1, 2",
        ([nid for nid, _, _ in failed], [channel for _, channel, _ in failed]),
    ).fetchall()
    return [(nid, channel) for nid, channel in rows]


def deliveries_check(failed: list[tuple[int, str, str]], given_up: list[tuple[int, str]]) -> dg.AssetCheckResult:
    """The run's delivery check (``deliveries_succeeded``)."""
    return dg.AssetCheckResult(
        check_name=DELIVERIES_CHECK,
        passed=not failed,
        severity=dg.AssetCheckSeverity.ERROR if given_up else dg.AssetCheckSeverity.WARN,
        description=(
            "every due channel delivered"
            if not failed
            else f"{len(failed)} channel(s) failed, {len(given_up)} of them on their last attempt"
        ),
        metadata={
            "failed": dg.MetadataValue.json([[nid, channel] for nid, channel, _ in failed]),
            "given_up": dg.MetadataValue.json([list(c) for c in given_up]),
        },
    )


balance_alert_job = dg.define_asset_job(
    "balance_alert_job",
    selection=dg.AssetSelection.assets(balance_alerts, notification_deliveries),
    tags=JOB_TAGS,
    description="Low-balance and short-runway warnings by email and signed webhook, once per crossing, and "
    "credit-expiry warnings once per grant, then delivery of every due notice.",
)


@dg.schedule(
    name="notification_retry_schedule",
    job=balance_alert_job,
    cron_schedule="*/10 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every 10 minutes: re-checks balances and retries failed notification deliveries on their "
    "backoff. Skips, with the reason, while neither email (SMTP_HOST) nor webhooks (BILLING_WEBHOOK_SECRET) "
    "are configured.",
)
def notification_retry_schedule(context: dg.ScheduleEvaluationContext, notify: NotifyResource):
    missing = notify.missing_configuration()
    if len(missing) == 2:  # no channel at all: nothing could be delivered, so no run
        return dg.SkipReason("skipped: " + " and ".join(missing.values()) + ": no notice can be delivered")
    at = context.scheduled_execution_time
    return dg.RunRequest(run_key=f"notifications@{at.isoformat()}", tags={CLOCK_TAG: at.isoformat()})


defs = dg.Definitions(
    assets=[balance_alerts, notification_deliveries], jobs=[balance_alert_job], schedules=[notification_retry_schedule]
)
