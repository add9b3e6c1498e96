"""Closing a month through Dagster: ``run_month_end(month, now) -> dict``.

Runs ``monthly_invoice_job`` (SLA credits, then invoices) for the month's partition, as the
``month_close_schedule`` would, on the DagsterInstance of ``DAGSTER_HOME`` when set (else an
ephemeral one), with the run tag ``billing/now``. A month that has not ended at ``now`` is
refused. Closing a month again issues and posts nothing. The summary is JSON-able.
"""

from __future__ import annotations

from datetime import date, datetime, timezone

from billing_pipeline.errors import BillingError, InputError
from billing_pipeline.invoicing.months import month_bounds, month_text, parse_month
from billing_pipeline.orchestration.clock import CLOCK_TAG, parse_clock

JOB_NAME = "monthly_invoice_job"


class MonthEndError(BillingError):
    """The month-end run failed; nothing of the failing step was committed."""


def check_month_ended(month: date, now: datetime) -> None:
    """Refuse a month that has not ended at ``now``, saying when it can be closed."""
    _start, end = month_bounds(month)
    if now < end:
        raise InputError(
            f"month {month_text(month)} has not ended at {now.isoformat()}: it ends at {end.isoformat()}. "
            "Close it after that (or pass a later --now)."
        )


def _summary_of(result) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for event in result.get_asset_materialization_events():
        mat = event.step_materialization_data.materialization
        value = mat.metadata.get("summary")
        if value is not None:
            out["/".join(mat.asset_key.path)] = value.value
    return out


def run_month_end(month: date | str, now: datetime | str | None = None, *, instance=None, definitions=None,
                  log_level: str = "CRITICAL") -> dict:
    """Close ``month`` (SLA credits, then invoices) through Dagster; returns a JSON-able summary:
    ``{"month", "now", "invoices_issued", "sla_credits_posted", "sla", "invoices", "runs"}``."""
    from billing_pipeline.orchestration.cycle import _error_text, default_instance

    month = parse_month(month)
    if now is None:
        now = datetime.now(timezone.utc)
    elif isinstance(now, str):
        try:
            now = parse_clock(now)
        except ValueError:
            raise InputError(f"--now {now!r} is not an ISO 8601 timestamp (for example 2026-11-01T06:00:00Z)") from None
    check_month_ended(month, now)
    if definitions is None:
        from billing_pipeline.definitions import defs as definitions
    job = definitions.resolve_job_def(JOB_NAME)
    instance = instance or default_instance()
    result = job.execute_in_process(
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        instance=instance, partition_key=f"{month:%Y-%m-%d}",
        tags={CLOCK_TAG: now.isoformat(), "billing/stage": "month_end"}, raise_on_error=False,
    )
    run = {"job": JOB_NAME, "run_id": result.run_id, "status": "SUCCESS" if result.success else "FAILURE"}
    if not result.success:
        raise MonthEndError(f"closing {month_text(month)} failed (Dagster run {result.run_id}): {_error_text(result)}")
    summaries = _summary_of(result)
    sla = summaries.get("invoicing/sla_credits", {})
    invoices = summaries.get("invoicing/invoices", {})
    return {"month": month_text(month), "now": now.isoformat(),
            "invoices_issued": invoices.get("invoices_issued", 0),
            "sla_credits_posted": sla.get("credits_posted", 0),
            "sla": sla, "invoices": invoices, "runs": [run]}
