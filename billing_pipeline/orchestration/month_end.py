"""Closing a month through Dagster: ``run_month_end(month, now) -> dict``.

Launches ``monthly_invoice_job`` (SLA credits, then invoices) for the month's partition on the
shared instance, as the ``month_close_schedule`` would, through ``orchestration.launcher`` (the
daemon's run queue when one runs, else here, in the money lane), with the run tag ``billing/now``.
A month that has not ended at ``now`` is refused. Closing a month again issues and posts nothing.
The summary is JSON-able.
"""

from __future__ import annotations

from datetime import MAXYEAR, date, datetime

from billing_pipeline.core.clock import CLOCK_TAG, clock_input, system_now
from billing_pipeline.core.errors import BillingError, InputError
from billing_pipeline.core.partitions import FIRST_HOUR_VARIABLE, first_billable_hour
from billing_pipeline.invoicing.months import month_bounds, month_text, parse_month

JOB_NAME = "monthly_invoice_job"


class MonthEndError(BillingError):
    """The month-end run failed; nothing of the failing step was committed."""


def month_to_close(value: date | str, now: datetime) -> date:
    """The month ``close-month`` may close at ``now``, or an ``InputError`` (exit 2) before any run.

    Text is read by the one month parser (``core.times.parse_month``: exactly ``YYYY-MM``, so not
    ``2026-1``, not ``"2026-11 "``), with the same message as every command. The month must lie
    between the month of the first billable hour (``BILLING_FIRST_HOUR``: nothing is billed
    before it) and the last month that has ended at ``now``. Compared as (year, month) before
    any date arithmetic, so ``9999-12`` is refused in words instead of overflowing."""
    month = value.replace(day=1) if isinstance(value, date) else parse_month(value, what="month")
    first = first_billable_hour()
    if (month.year, month.month) < (first.year, first.month):
        raise InputError(
            f"month {month_text(month)} is before the first billable hour {first:%Y-%m-%dT%H:%MZ} "
            f"({FIRST_HOUR_VARIABLE}): there is nothing to close; the first month is {first:%Y-%m}."
        )
    if (month.year, month.month) >= (now.year, now.month):  # ``now`` is UTC: the month has not ended
        if month.year < MAXYEAR:
            check_month_ended(month, now)  # refuses, saying when the month ends
        raise InputError(
            f"month {month_text(month)} has not ended at {now.isoformat()}: close it after it ends "
            "(or pass a later --now)."
        )
    return month


def check_month_ended(month: date, now: datetime) -> None:
    """Refuse a month that has not ended at ``now``, saying when it can be closed."""
    _start, end = month_bounds(month)
    if now < end:
        raise InputError(
            f"month {month_text(month)} has not ended at {now.isoformat()}: it ends at {end.isoformat()}. "
            "Close it after that (or pass a later --now)."
        )


def _summaries(instance, run_id: str) -> dict[str, dict]:
    from dagster._core.events import DagsterEventType

    out: dict[str, dict] = {}
    for record in instance.get_records_for_run(run_id, of_type={DagsterEventType.ASSET_MATERIALIZATION}).records:
        mat = record.event_log_entry.dagster_event.event_specific_data.materialization
        value = mat.metadata.get("summary")
        if value is not None:
            out[mat.asset_key.to_user_string()] = value.value
    return out


def run_month_end(
    month: date | str,
    now: datetime | str | None = None,
    *,
    instance=None,
    database_url: str | None = None,
    force: bool = False,
) -> dict:
    """Close ``month`` (SLA credits, then invoices) through Dagster; returns a JSON-able summary:
    ``{"month", "now", "invoices_issued", "sla_credits_posted", "sla", "invoices", "runs", "readiness"}``.

    A month with hours not settled yet is refused (``MonthNotReadyError``, exit 2, no run launched)
    until ``BILLING_MONTH_CLOSE_WAIT_HOURS`` after its end, unless ``force`` (invoicing.readiness)."""
    from billing_pipeline.db.connection import connect
    from billing_pipeline.db.connection import database_url as configured_url
    from billing_pipeline.invoicing.readiness import FORCE_TAG, MonthNotReadyError, month_readiness
    from billing_pipeline.orchestration.launcher import Launcher, code_location, default_instance

    now = system_now() if now is None else clock_input(now, "--now")
    month = month_to_close(month, now)
    url = database_url or configured_url()
    with connect(url, autocommit=True) as conn:
        readiness = month_readiness(conn, month, now)
    if not readiness.ready and not force:
        raise MonthNotReadyError(f"month {month_text(month)} is not ready to close: {readiness.reason}.")
    tags = {CLOCK_TAG: now.isoformat(), "dagster/partition": f"{month:%Y-%m-%d}", "billing/stage": "month_end"}
    if force:
        tags[FORCE_TAG] = "true"
    instance = instance or default_instance()
    with connect(url, autocommit=True) as conn, code_location(instance) as (workspace, location):
        launcher = Launcher(instance, workspace, location, lock_conn=conn)
        outcome = launcher.run(JOB_NAME, label="", tags=tags)
    run = {
        "job": JOB_NAME,
        "run_id": outcome.run_id,
        "status": outcome.status,
        "seconds": round(outcome.seconds, 3),
        "launched_by": outcome.launched_by,
    }
    if not outcome.success:
        raise MonthEndError(
            f"closing {month_text(month)} failed (Dagster run {outcome.run_id}): "
            + ("; ".join(outcome.errors) or "see the run's event log")
        )
    summaries = _summaries(instance, outcome.run_id)
    sla = summaries.get("invoicing/sla_credits", {})
    invoices = summaries.get("invoicing/invoices", {})
    return {
        "month": month_text(month),
        "now": now.isoformat(),
        "invoices_issued": invoices.get("invoices_issued", 0),
        "sla_credits_posted": sla.get("credits_posted", 0),
        "sla": sla,
        "invoices": invoices,
        "forced": force,
        "readiness": readiness.as_dict(),
        "runs": [run],
    }
