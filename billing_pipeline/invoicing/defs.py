"""Dagster definitions of the invoicing domain (month-end).

* ``sla_credit_job``: the month's SLA credits (``invoicing/sla_credits``).
* ``monthly_invoice_job``: SLA credits, then the invoices (``invoicing/invoices`` depends on the
  SLA asset, so a run of the job does them in that order), then the analysts' month-end marts
  (the ``dbt_invoicing`` group: invoices, lines, SLA availability, unbilled usage).
  ``billing close-month`` runs it.
* ``month_close_schedule``: runs ``monthly_invoice_job`` for the month just ended, on the first of
  the next month once its last hour has had ``BILLING_MONTH_CLOSE_DELAY_HOURS`` (default 6) to
  settle (read when the definitions load). On by default: closing is idempotent.
"""

import os
from datetime import UTC, timedelta

import dagster as dg

from billing_pipeline.core.clock import CLOCK_TAG
from billing_pipeline.core.runs import JOB_TAGS
from billing_pipeline.invoicing.assets import GROUP, invoices, sla_credits
from billing_pipeline.transform.translator import INVOICING_GROUP

DEFAULT_CLOSE_DELAY_HOURS = 6

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


def close_delay_hours() -> int:
    """``BILLING_MONTH_CLOSE_DELAY_HOURS``: hours after the month's end before it is closed."""
    raw = os.environ.get("BILLING_MONTH_CLOSE_DELAY_HOURS", "").strip()
    try:
        value = int(raw) if raw else DEFAULT_CLOSE_DELAY_HOURS
    except ValueError:
        value = DEFAULT_CLOSE_DELAY_HOURS
    return min(max(value, 0), 27 * 24)  # the schedule fires within the next month's first 28 days


def build_month_close_schedule(delay_hours: int | None = None) -> dg.ScheduleDefinition:
    """The schedule closing the month just ended, ``delay_hours`` after its last hour ended."""
    delay = close_delay_hours() if delay_hours is None else delay_hours

    @dg.schedule(
        name="month_close_schedule",
        job=monthly_invoice_job,
        cron_schedule=f"0 {delay % 24} {1 + delay // 24} * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Closes the month just ended {delay} hour(s) after its last hour: SLA credits, then invoices.",
    )
    def month_close_schedule(context: dg.ScheduleEvaluationContext):
        tick = context.scheduled_execution_time.astimezone(UTC)
        month_start = (tick.replace(day=1) - timedelta(days=1)).replace(day=1)
        key = f"{month_start:%Y-%m-01}"
        return dg.RunRequest(
            run_key=f"month_close:{key}",
            partition_key=key,
            tags={CLOCK_TAG: tick.isoformat(), "billing/stage": "month_end"},
        )

    return month_close_schedule


month_close_schedule = build_month_close_schedule()

defs = dg.Definitions(
    assets=[sla_credits, invoices],
    jobs=[sla_credit_job, monthly_invoice_job],
    schedules=[month_close_schedule],
)
