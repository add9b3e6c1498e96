"""``billing run``: the hourly cycle for a window of hours, through the Dagster instance.

``run_billing_window(start, end, now)``:

1. Corrections first. Hours outside the window whose rental slices are stale (a corrected
   ``machine_usages`` row) or whose ingestion was re-materialised after their settlement are
   re-priced and settled (``hourly_billing_job`` without metric ingestion), as the daemon's
   correction sensors would.
2. The window, in chunks of at most ``chunk_hours`` hours, each one ranged run of
   ``hourly_billing_job``: ingestion, dbt and settlement for the chunk's hours (one dbt build per
   chunk), then top-ups, lifecycle, alerts and deliveries once, at the run's clock.
3. A summary read back from the database: what was posted, accounts by lifecycle state,
   quarantined rows, notices queued and deliveries failed, cluster actions, incomplete hours,
   and every run with its failed steps and checks.

Runs go through ``orchestration.launcher``: queued for the daemon when one is running, else
executed here; either way they are runs of the workspace's code location, shown in the UI. Every
run carries ``billing/now`` (the clock top-ups, the lifecycle and ongoing rentals see) and
``billing/cycle``. A failed run stops the later chunks (they build on it); a failed check (a
top-up that could not be made, a cluster action that failed) does not: the summary names it and
the exit status is non-zero.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable

from billing_pipeline.errors import BillingError, InputError
from billing_pipeline.orchestration.clock import CLOCK_TAG, parse_clock
from billing_pipeline.orchestration.launcher import Launcher, RunOutcome, code_location, default_instance
from billing_pipeline.partitions import first_billable_hour, partition_hour, partition_key

HOUR = timedelta(hours=1)
CHUNK_HOURS = 24
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


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
    first = first_billable_hour()
    if start < first:
        raise InputError(f"--start {start.isoformat()} is before the first billable hour {first.isoformat()} "
                         "(BILLING_FIRST_HOUR)")
    last_hour = end - HOUR
    if last_hour >= now:
        raise InputError(
            f"the hour starting {last_hour.isoformat()} has not begun at --now {now.isoformat()}: "
            "run only hours that have started (lower --end or raise --now)"
        )
    return start, end, now


@dataclass
class CycleResult:
    start: datetime
    end: datetime
    now: datetime
    cycle_id: str
    runs: list[RunOutcome] = field(default_factory=list)
    corrections: list[str] = field(default_factory=list)  # partition keys re-settled outside the window
    summary: dict = field(default_factory=dict)

    @property
    def hours(self) -> list[datetime]:
        return hours_between(self.start, self.end)

    @property
    def problems(self) -> list[str]:
        """Failed runs and failed ERROR checks, each in one line naming the stage."""
        out = []
        for run in self.runs:
            if not run.success:
                out.append(f"run {run.run_id} ({_scope(run)}) {run.status}: "
                           + ("; ".join(run.errors) or "see its event log"))
            for check in run.failed_checks:
                if check["severity"] == "ERROR":
                    out.append(f"{check['asset']} ({check['check']}): {check['description']}")
        return out

    def as_dict(self) -> dict:
        return {
            "cycle_id": self.cycle_id, "start": self.start.isoformat(), "end": self.end.isoformat(),
            "now": self.now.isoformat(), "hours": len(self.hours), "ok": not self.problems,
            "problems": self.problems, "corrections": self.corrections, **self.summary,
            "runs": [{"run_id": r.run_id, "job": r.job_name, "scope": _scope(r), "status": r.status,
                      "launched_by": r.launched_by, "seconds": round(r.seconds, 3), "failed_steps": r.failed_steps,
                      "failed_checks": r.failed_checks, "errors": r.errors} for r in self.runs],
        }


def _scope(run: RunOutcome) -> str:
    tags = run.tags
    if RANGE_START_TAG in tags:
        return f"hours {tags[RANGE_START_TAG]} to {tags[RANGE_END_TAG]}"
    if "dagster/partition" in tags:
        return f"hour {tags['dagster/partition']}"
    return run.job_name


def chunks(start: datetime, end: datetime, size: int) -> list[tuple[datetime, datetime]]:
    """[start, end) cut into consecutive windows of at most ``size`` hours."""
    out, h = [], start
    while h < end:
        out.append((h, min(h + size * HOUR, end)))
        h = out[-1][1]
    return out


def stale_hours_outside(conn, instance, start: datetime, end: datetime, now: datetime) -> list[str]:
    """Hours outside [start, end) that a correction left unsettled (rentals or re-ingestion)."""
    from billing_pipeline.asset_keys import LEDGER
    from billing_pipeline.ingestion.assets import MACHINE_RENTAL_HOURS, METRIC_HOURS
    from billing_pipeline.orchestration.graph import stale_rental_partitions

    import dagster as dg

    stale = set(stale_rental_partitions(conn, now))
    materialized = dg.DagsterEventType.ASSET_MATERIALIZATION
    settled = instance.get_latest_storage_id_by_partition(LEDGER, materialized)
    for key in (METRIC_HOURS, MACHINE_RENTAL_HOURS):
        for partition, storage_id in instance.get_latest_storage_id_by_partition(key, materialized).items():
            if settled.get(partition, 0) < storage_id:
                stale.add(partition)
    return sorted(k for k in stale if not (start <= partition_hour(k) < end) and partition_hour(k) < now)


def run_billing_window(start: datetime | str, end: datetime | str, now: datetime | str | None = None, *,
                       instance=None, database_url: str | None = None, chunk_hours: int = CHUNK_HOURS,
                       asset_selection=None, on_progress: Callable[[str], None] | None = None) -> CycleResult:
    """Run the hourly cycle for ``[start, end)`` on the instance; see the module doc.

    ``asset_selection`` (asset keys) runs part of the cycle (tests run ingestion alone with it);
    ``on_progress`` receives one line per step started or done, with hours done and time left.
    """
    from billing_pipeline.db.connection import connect
    from billing_pipeline.db.connection import database_url as configured_url
    from billing_pipeline.orchestration.graph import settlement_after_rentals
    from billing_pipeline.orchestration.summary import summarise, watermarks

    start, end, now = validate_window(start, end, now)
    url = database_url or configured_url()
    instance = instance or default_instance()
    result = CycleResult(start=start, end=end, now=now, cycle_id=uuid.uuid4().hex[:12])
    say = on_progress or (lambda _line: None)
    began = time.monotonic()
    windows = chunks(start, end, chunk_hours)
    total_hours = len(result.hours)
    tags = {"billing/cycle": result.cycle_id, CLOCK_TAG: now.isoformat()}

    with connect(url, autocommit=True) as conn, code_location(instance) as (workspace, location):
        marks = watermarks(conn)
        launcher = Launcher(instance, workspace, location, lock_conn=conn)
        if asset_selection is None:
            result.corrections = stale_hours_outside(conn, instance, start, end, now)
        if result.corrections:
            from billing_pipeline.definitions import defs

            selection = list(settlement_after_rentals.resolve(defs.resolve_asset_graph()))
            for i, key in enumerate(result.corrections, 1):
                launcher.on_progress = lambda line, i=i: say(
                    f"corrections {i}/{len(result.corrections)} hour {key}: {line}")
                result.runs.append(launcher.run("hourly_billing_job", asset_selection=selection, label="",
                                                tags={**tags, "dagster/partition": key,
                                                      "billing/stage": "correction"}))
        done_hours = 0
        for n, (lo, hi) in enumerate(windows, 1):
            hours = len(hours_between(lo, hi))

            def progress(line: str, n=n, done=done_hours) -> None:
                elapsed = time.monotonic() - began
                left = f", ~{elapsed / done * (total_hours - done):.0f} s left" if done else ""
                say(f"[{elapsed:6.1f} s] chunk {n}/{len(windows)} ({done} of {total_hours} hours done{left}): {line}")

            launcher.on_progress = progress
            range_tags = {RANGE_START_TAG: partition_key(lo), RANGE_END_TAG: partition_key(hi - HOUR)}
            run = launcher.run("hourly_billing_job", asset_selection=asset_selection,
                               tags={**tags, **range_tags}, label="")
            result.runs.append(run)
            done_hours += hours
            say(f"[{time.monotonic() - began:6.1f} s] {done_hours} of {total_hours} hours: run {run.run_id[:8]} "
                f"{run.status}")
            if not run.success:
                break
        result.summary = summarise(conn, marks, start, end)
    return result


class CycleError(BillingError):
    """The cycle ran with problems; ``result`` holds what it did."""

    def __init__(self, result: CycleResult) -> None:
        super().__init__("; ".join(result.problems))
        self.result = result
