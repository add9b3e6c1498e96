"""The hourly cycle, run through Dagster: ``run_hourly_cycle(start, end, now=None, instance=None)``.

For every UTC hour in ``[start, end)``, in order, each ``Stage`` of ``STAGES`` runs as one
Dagster job run (partitioned stages with that hour's partition key), on the DagsterInstance of
``DAGSTER_HOME`` when it is set (so the runs show in the web UI) or else an ephemeral one.
Every run carries the tags ``billing/now`` (the clock lifecycle decisions and ongoing rentals
see: ``orchestration.clock``), ``billing/cycle`` and ``billing/stage``.

Before the hours, rental hours made stale by corrections to ``machine_usages`` (outside the
window: those inside are re-sliced by the window itself) are re-sliced through
``machine_rental_hours_job``, as ``machine_rental_corrections_sensor`` would.

A stage failing stops the cycle (later hours and stages build on earlier ones) with a
``CycleError`` naming the stage, the hour, the Dagster run and the error.

Adding a stage (dbt, deduction, alerts, top-ups, lifecycle): define its job in the domain's
``defs.py`` and append ``Stage("<name>", "<job name>", partitioned=<bool>)`` to ``STAGES`` in
the order the cycle must run them. An unpartitioned stage (``partitioned=False``) still runs
once per hour, after the stages before it; ``Stage.clock`` says which clock its run sees.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Literal

from billing_pipeline.errors import BillingError, InputError
from billing_pipeline.orchestration.clock import CLOCK_TAG, parse_clock

HOUR = timedelta(hours=1)
PARTITION_FORMAT = "%Y-%m-%d-%H:%M"


@dataclass(frozen=True)
class Stage:
    """One step of the hourly cycle: a job of the one ``Definitions``, run once per hour.

    ``partitioned``: run with the hour's partition key (the job must use ``hourly_partitions``).
    ``clock``: the ``billing/now`` the run sees: ``"now"`` (the cycle's clock) or ``"hour_end"``
    (the end of the hour being run, capped at the cycle's clock: replaying history "as the
    schedules would have run it").
    """

    name: str
    job_name: str
    partitioned: bool = True
    clock: Literal["now", "hour_end"] = "now"
    description: str = ""


STAGES: list[Stage] = [
    Stage("ingestion", "ingestion_hourly_job",
          description="Prometheus metrics and machine rentals of the hour (billing_pipeline.ingestion)"),
    Stage("dbt", "dbt_hourly_job",
          description="dbt build of the hour: priced usage, reconciliation, balances, invoice lines (billing_pipeline.transform)"),
    Stage("deduction", "credit_usage_job",
          description="settles the hour's fct_priced_usage into the ledger, differences only (billing_pipeline.ledger.deduction)"),
    # Top-up before alerts: a balance restored by the saved card needs no low-balance warning.
    Stage("auto_topup", "auto_topup_job", partitioned=False, clock="hour_end",
          description="Stripe auto top-up of low balances, exactly once (billing_pipeline.payments.topup)"),
    Stage("alerts", "balance_alert_job", partitioned=False, clock="hour_end",
          description="low-balance and short-runway warnings, then notification delivery (billing_pipeline.alerts)"),
    # Lifecycle stays last: it acts on the balances the stages before it settled.
    Stage("lifecycle", "grace_period_job", partitioned=False, clock="now",
          description="account lifecycle at the cycle's clock: grace, recovery, expiry cleanup (billing_pipeline.lifecycle)"),
]

RENTAL_CORRECTIONS_JOB = "machine_rental_hours_job"


@dataclass(frozen=True)
class StageRun:
    hour: datetime
    stage: str
    run_id: str
    success: bool
    seconds: float
    error: str | None = None


@dataclass
class CycleResult:
    start: datetime
    end: datetime
    now: datetime
    cycle_id: str
    runs: list[StageRun] = field(default_factory=list)
    corrections: list[StageRun] = field(default_factory=list)

    @property
    def hours(self) -> list[datetime]:
        return hours_between(self.start, self.end)

    def as_dict(self) -> dict:
        def run(r: StageRun) -> dict:
            return {"hour": r.hour.isoformat(), "stage": r.stage, "run_id": r.run_id,
                    "status": "SUCCESS" if r.success else "FAILURE", "seconds": round(r.seconds, 3),
                    **({"error": r.error} if r.error else {})}
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "now": self.now.isoformat(),
                "cycle_id": self.cycle_id, "hours": len(self.hours),
                "corrections": [run(r) for r in self.corrections], "runs": [run(r) for r in self.runs]}


class CycleError(BillingError):
    """A stage of the cycle failed; ``result`` holds the runs done so far."""

    def __init__(self, message: str, result: CycleResult) -> None:
        super().__init__(message)
        self.result = result


def to_utc(value: datetime | str, what: str) -> datetime:
    if isinstance(value, str):
        try:
            return parse_clock(value)
        except ValueError:
            raise InputError(
                f"{what} {value!r} is not an ISO 8601 timestamp (for example 2025-03-01T00:00:00Z)"
            ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def hours_between(start: datetime, end: datetime) -> list[datetime]:
    out, h = [], start
    while h < end:
        out.append(h)
        h += HOUR
    return out


def validate_window(start: datetime | str, end: datetime | str, now: datetime | str | None = None
                    ) -> tuple[datetime, datetime, datetime]:
    """Check and normalise a cycle window; raise ``InputError`` saying what to fix."""
    from billing_pipeline.partitions import hourly_partitions

    start, end = to_utc(start, "--start"), to_utc(end, "--end")
    now = to_utc(now, "--now") if now is not None else datetime.now(timezone.utc)
    for what, value in (("--start", start), ("--end", end)):
        if value.minute or value.second or value.microsecond:
            floor = value.replace(minute=0, second=0, microsecond=0)
            raise InputError(
                f"{what} {value.isoformat()} is not on an hour boundary: usage is run in UTC hours "
                f"[h, h+1h); use e.g. {floor.isoformat()}"
            )
    if end <= start:
        raise InputError(f"--end {end.isoformat()} must be after --start {start.isoformat()}")
    first = datetime.fromtimestamp(hourly_partitions.start.timestamp(), tz=timezone.utc)
    if start < first:
        raise InputError(f"--start {start.isoformat()} is before the first billable hour {first.isoformat()}")
    last_hour = end - HOUR
    if last_hour >= now:
        raise InputError(
            f"the hour starting {last_hour.isoformat()} has not begun at --now {now.isoformat()}: "
            "run only hours that have started (lower --end or raise --now)"
        )
    return start, end, now


def default_instance():
    """The DagsterInstance of ``DAGSTER_HOME`` when set (runs show in the web UI), else ephemeral."""
    import dagster as dg

    if os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.get()
    return dg.DagsterInstance.ephemeral()


def _error_text(result) -> str:
    """The user-facing message of a failed in-process run (deepest cause, class name dropped)."""
    messages = []
    for event in result.all_events:
        data = getattr(event, "step_failure_data", None) if event.is_step_failure else None
        err = data.error if data is not None else None
        if err is None and event.event_type_value == "PIPELINE_FAILURE":
            err = getattr(event.event_specific_data, "error", None)
        while err is not None and err.cause is not None:
            err = err.cause
        if err is not None:
            text = err.message.strip()
            marker = f"{err.cls_name}: "  # "module.path.ClassName: message"
            head, sep, rest = text.partition(marker)
            messages.append(rest if sep and " " not in head else text)
    seen: list[str] = []
    for m in messages:
        if m not in seen:
            seen.append(m)
    return "; ".join(seen) or "the Dagster run failed (see its event log)"


def _execute(job, *, hour: datetime | None, partitioned: bool, tags: dict, instance, stage: str,
             log_level: str = "INFO") -> StageRun:
    t0 = time.monotonic()
    result = job.execute_in_process(
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        instance=instance, partition_key=hour.strftime(PARTITION_FORMAT) if partitioned and hour else None,
        tags=tags, raise_on_error=False,
    )
    seconds = time.monotonic() - t0
    return StageRun(hour=hour, stage=stage, run_id=result.run_id, success=result.success, seconds=seconds,
                    error=None if result.success else _error_text(result))


def run_hourly_cycle(start: datetime | str, end: datetime | str, now: datetime | str | None = None,
                     instance=None, *, stages: list[Stage] | None = None, definitions=None,
                     log_level: str = "INFO") -> CycleResult:
    """Run every stage for every hour in ``[start, end)`` through Dagster; see the module doc.

    ``log_level`` is the Dagster console logger's level (the event log in the instance keeps
    everything); the command line uses CRITICAL so that it prints only its own summary.
    """
    start, end, now = validate_window(start, end, now)
    if definitions is None:
        from billing_pipeline.definitions import defs as definitions
    stages = STAGES if stages is None else stages
    instance = instance or default_instance()
    result = CycleResult(start=start, end=end, now=now, cycle_id=uuid.uuid4().hex[:12])
    base_tags = {"billing/cycle": result.cycle_id}
    jobs = {s.name: definitions.resolve_job_def(s.job_name) for s in stages}

    if any(s.job_name == "ingestion_hourly_job" for s in stages):
        _rental_corrections(definitions, instance, result, base_tags, log_level)

    for hour in result.hours:
        for stage in stages:
            clock = now if stage.clock == "now" else min(now, hour + HOUR)
            tags = {**base_tags, CLOCK_TAG: clock.isoformat(), "billing/stage": stage.name}
            run = _execute(jobs[stage.name], hour=hour, partitioned=stage.partitioned, tags=tags,
                           instance=instance, stage=stage.name, log_level=log_level)
            result.runs.append(run)
            if not run.success:
                raise CycleError(
                    f"stage {stage.name} failed for hour {hour:%Y-%m-%d %H:00} UTC (Dagster run {run.run_id}): "
                    f"{run.error}", result)
    return result


def _rental_corrections(definitions, instance, result: CycleResult, base_tags: dict, log_level: str) -> None:
    from billing_pipeline.db.connection import connect, database_url
    from billing_pipeline.ingestion.rentals import stale_rental_hours
    from billing_pipeline.partitions import hourly_partitions

    first = hourly_partitions.start.timestamp()
    with connect(database_url()) as conn:
        stale = [h for h in stale_rental_hours(conn, result.now)
                 if h.timestamp() >= first and not (result.start <= h < result.end)]
    if not stale:
        return
    job = definitions.resolve_job_def(RENTAL_CORRECTIONS_JOB)
    for hour in stale:
        tags = {**base_tags, CLOCK_TAG: result.now.isoformat(), "billing/stage": "rental_corrections"}
        run = _execute(job, hour=hour, partitioned=True, tags=tags, instance=instance, stage="rental_corrections",
                       log_level=log_level)
        result.corrections.append(run)
        if not run.success:
            raise CycleError(
                f"re-slicing corrected rentals failed for hour {hour:%Y-%m-%d %H:00} UTC "
                f"(Dagster run {run.run_id}): {run.error}", result)
