"""Dagster definitions of the invoicing domain (month-end).

* ``sla_credit_job``: the month's SLA credits (``invoicing/sla_credits``).
* ``monthly_invoice_job``: SLA credits, then the invoices (``invoicing/invoices`` depends on the
  SLA asset, so a run of the job does them in that order), then the analysts' month-end marts
  (the ``dbt_invoicing`` group: invoices, lines, SLA availability, unbilled usage).
  ``billing close-month`` runs it.
* ``month_close_schedule``: every hour, considers the month just ended and runs
  ``monthly_invoice_job`` for it once it is ready (``invoicing.readiness``: every billable hour
  settled, or ``BILLING_MONTH_CLOSE_WAIT_HOURS``, default 72, after its end); before that each tick
  skips with the reason. Off by default, like ``hourly_billing_job_schedule``: a month is only
  ever settled by the hourly cycle, so the close runs where the cycle runs. Turn both on together.
"""

from datetime import UTC, timedelta

import dagster as dg

from billing_pipeline.core.clock import CLOCK_TAG
from billing_pipeline.core.partitions import first_billable_month
from billing_pipeline.core.runs import JOB_TAGS
from billing_pipeline.invoicing.assets import GROUP, invoices, sla_credits
from billing_pipeline.invoicing.readiness import month_readiness
from billing_pipeline.resources.postgres import PostgresResource
from billing_pipeline.transform.translator import INVOICING_GROUP

sla_credit_job = dg.define_asset_job(
    "sla_credit_job",
    selection=dg.AssetSelection.assets(sla_credits),
    tags={**JOB_TAGS, "billing/domain": "invoicing"},  # the money lane: one writer at a time
    description="Measures the month's availability per deployment and posts its SLA credits, once (docs/rules/month-end.md).",
)

monthly_invoice_job = dg.define_asset_job(
    "monthly_invoice_job",
    selection=dg.AssetSelection.groups(GROUP, INVOICING_GROUP),  # sla_credits, invoices, lines; the marts
    tags={**JOB_TAGS, "billing/domain": "invoicing"},  # the money lane: one writer at a time
    description="Month-end: SLA credits, then one immutable invoice per account (docs/rules/month-end.md), then "
    "the month-end marts.",
)


@dg.schedule(
    name="month_close_schedule",
    job=monthly_invoice_job,
    cron_schedule="25 * * * *",  # after the hourly cycle (minute 5) has settled the hour
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Closes the month just ended (SLA credits, then invoices) once every billable hour of it is "
    "settled, or BILLING_MONTH_CLOSE_WAIT_HOURS (default 72) after its end; skips with the reason before that.",
)
def month_close_schedule(context: dg.ScheduleEvaluationContext, postgres: PostgresResource):
    tick = context.scheduled_execution_time.astimezone(UTC)
    month = (tick.replace(day=1) - timedelta(days=1)).replace(day=1).date()
    if month < first_billable_month():
        return dg.SkipReason(f"no month to close: the first billable month is {first_billable_month():%Y-%m}")
    key = f"{month:%Y-%m-01}"
    with postgres.connect() as conn:
        closed = conn.execute("SELECT count(*) FROM billing.invoices WHERE period_month = %s", (month,)).fetchone()[0]
        if closed:
            return dg.SkipReason(f"{month:%Y-%m} is closed ({closed} invoice(s) issued)")
        readiness = month_readiness(conn, month, tick)
    if not readiness.ready:
        return dg.SkipReason(f"not closing yet: {readiness.reason}")
    return dg.RunRequest(
        run_key=f"month_close:{key}",
        partition_key=key,
        # Ready by the wait with hours still missing: the run's asset sees the same clock and closes.
        tags={CLOCK_TAG: tick.isoformat(), "billing/stage": "month_end"},
    )


defs = dg.Definitions(
    assets=[sla_credits, invoices],
    jobs=[sla_credit_job, monthly_invoice_job],
    schedules=[month_close_schedule],
)
