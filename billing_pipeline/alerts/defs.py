"""Dagster definitions of the alerts domain.

* ``balance_alert_job``: opens and closes low-balance and short-runway crossings for every
  account, queues their notices (``alerts.balance``), then delivers every due notification of
  the outbox (``alerts.delivery``; also those queued by top-ups and the lifecycle).
* ``balance_alert_sensor`` (on by default): runs it after the ledger changes (deductions, top-ups)
  or ``fct_account_balances`` (the burn rate) is materialised.
* ``notification_retry_schedule`` (on by default): every 10 minutes, so failed deliveries are
  retried on their backoff even when no data moves.
"""


from typing import Optional

import dagster as dg

from billing_pipeline.alerts.balance import evaluate_balance_alerts
from billing_pipeline.alerts.delivery import deliver_due
from billing_pipeline.ledger.defs import balance_change_keys
from billing_pipeline.orchestration.sensors import build_materialization_sensor
from billing_pipeline.orchestration.clock import parse_clock, run_clock
from billing_pipeline.resources.notify import NotifyResource
from billing_pipeline.resources.postgres import PostgresResource


class AlertConfig(dg.Config):
    now: Optional[str] = None  # ISO clock; default the run's billing/now tag, else the wall clock


@dg.op(description="Warn about low balances and short runways (once per crossing), then deliver due notices.")
def alert_and_deliver(context: dg.OpExecutionContext, config: AlertConfig, postgres: PostgresResource,
                      notify: NotifyResource) -> dg.Output:
    now = parse_clock(config.now) if config.now else run_clock(context)
    with postgres.connect(autocommit=True) as conn:
        alerts = evaluate_balance_alerts(conn, now)
        delivery = deliver_due(conn, notify, now)
    context.log.info(alerts.summary())
    context.log.info(delivery.summary())
    for nid, channel, error in delivery.failed:
        context.log.warning(f"notification {nid} by {channel} failed, will retry: {error}")
    return dg.Output(None, metadata={
        "now": now.isoformat(),
        "crossings_opened": dg.MetadataValue.json([list(c) for c in alerts.opened]),
        "crossings_recovered": dg.MetadataValue.json([list(c) for c in alerts.recovered]),
        "notifications_queued": alerts.queued,
        "delivered": len(delivery.delivered), "delivery_failures": len(delivery.failed),
        "burn_rate_source": alerts.runway_source,
    })


@dg.job(tags={"billing/domain": "alerts"},
        description="Low-balance and short-runway warnings by email and signed webhook, once per crossing.")
def balance_alert_job():
    alert_and_deliver()


balance_alert_sensor = build_materialization_sensor(
    name="balance_alert_sensor",
    job=balance_alert_job,
    asset_keys=balance_change_keys,
    per_partition=False,
    description="Checks balances after the ledger changes or fct_account_balances is materialised.",
)

notification_retry_schedule = dg.ScheduleDefinition(
    name="notification_retry_schedule",
    job=balance_alert_job,
    cron_schedule="*/10 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Retries failed notification deliveries on their backoff, and re-checks balances.",
)

defs = dg.Definitions(jobs=[balance_alert_job], sensors=[balance_alert_sensor],
                      schedules=[notification_retry_schedule])
