"""Dagster definitions of the alerts domain.

* ``alerts/balance_alerts``: opens and closes low-balance and short-runway crossings for every
  account and queues their notices (``alerts.balance``), after the hour's settlement, top-ups and
  the balances mart (its burn rate).
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
from billing_pipeline.core.asset_keys import (
    ACCOUNT_LIFECYCLE,
    AUTO_TOPUPS,
    BALANCE_ALERTS,
    LEDGER,
    NOTIFICATION_DELIVERIES,
)
from billing_pipeline.core.clock import CLOCK_TAG, run_clock
from billing_pipeline.core.ownership import BILLING_OWNERS
from billing_pipeline.core.runs import JOB_TAGS
from billing_pipeline.resources.notify import NotifyResource
from billing_pipeline.resources.postgres import PostgresResource
from billing_pipeline.transform.assets import dbt_model_key

ACCOUNT_BALANCES = dbt_model_key("fct_account_balances")


@dg.asset(
    key=BALANCE_ALERTS,
    # Top-ups first: a balance the saved card restored needs no low-balance warning.
    deps=[LEDGER, AUTO_TOPUPS, ACCOUNT_BALANCES],
    group_name="alerts",
    kinds={"postgres"},
    owners=BILLING_OWNERS,
    description="billing.balance_alert_crossings: low-balance and short-runway warnings, once per crossing, "
    "with a recovery notice; notices are queued in billing.notification_outbox.",
)
def balance_alerts(context: dg.AssetExecutionContext, postgres: PostgresResource) -> dg.MaterializeResult:
    now = run_clock(context)
    with postgres.connect(autocommit=True) as conn:
        alerts = evaluate_balance_alerts(conn, now)
    context.log.info(alerts.summary())
    return dg.MaterializeResult(
        metadata={
            "now": now.isoformat(),
            "crossings_opened": dg.MetadataValue.json([list(c) for c in alerts.opened]),
            "crossings_recovered": dg.MetadataValue.json([list(c) for c in alerts.recovered]),
            "notifications_queued": alerts.queued,
            "burn_rate_source": alerts.runway_source,
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
)
def notification_deliveries(
    context: dg.AssetExecutionContext, postgres: PostgresResource, notify: NotifyResource
) -> dg.MaterializeResult:
    now = run_clock(context)
    with postgres.connect(autocommit=True) as conn:
        delivery = deliver_due(conn, notify, now)
    context.log.info(delivery.summary())
    for nid, channel, error in delivery.failed:
        context.log.warning(f"notification {nid} by {channel} failed, will retry: {error}")
    for channel, (why, waiting) in delivery.skipped.items():
        context.log.info(f"{channel} skipped: {why}; {waiting} delivery(ies) left pending, no retry spent")
    return dg.MaterializeResult(
        metadata={
            "now": now.isoformat(),
            **{f"{ch}_channel": f"skipped: {why} ({n} pending)" for ch, (why, n) in delivery.skipped.items()},
            "delivered": len(delivery.delivered),
            "delivery_failures": len(delivery.failed),
            "failures": dg.MetadataValue.json([[nid, channel, error] for nid, channel, error in delivery.failed]),
        }
    )


balance_alert_job = dg.define_asset_job(
    "balance_alert_job",
    selection=dg.AssetSelection.assets(balance_alerts, notification_deliveries),
    tags=JOB_TAGS,
    description="Low-balance and short-runway warnings by email and signed webhook, once per crossing, "
    "then delivery of every due notice.",
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
