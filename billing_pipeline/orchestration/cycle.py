"""``billing run``: the hourly cycle for a window of hours, through the Dagster instance.

``run_billing_window(start, end, now)``:

1. Corrections first. Hours outside the window whose rental slices are stale (a corrected
   ``machine_usages`` row) or whose ingestion was re-materialised after their settlement are
   re-priced and settled (``hourly_billing_job`` without metric ingestion, one ranged run per
   stretch of consecutive hours), as the daemon's correction sensors would.
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
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from billing_pipeline.core.clock import CLOCK_TAG, clock_input, system_now
from billing_pipeline.core.errors import BillingError, InputError
from billing_pipeline.core.hours import HOUR, Hour
from billing_pipeline.core.partitions import first_billable_hour
from billing_pipeline.orchestration.launcher import Launcher, RunOutcome, code_location, default_instance

CHUNK_HOURS = 24
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def hours_between(start: datetime, end: datetime) -> list[datetime]:
    return [hour.start for hour in Hour.range(Hour.of(start), Hour.of(end))]


def validate_window(
    start: datetime | str, end: datetime | str, now: datetime | str | None = None
) -> tuple[datetime, datetime, datetime]:
    """Check and normalise a cycle window; raise ``InputError`` saying what to fix."""
    start, end = clock_input(start, "--start"), clock_input(end, "--end")
    now = clock_input(now, "--now") if now is not None else system_now()
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
        raise InputError(
            f"--start {start.isoformat()} is before the first billable hour {first.isoformat()} (BILLING_FIRST_HOUR)"
        )
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
                out.append(
                    f"run {run.run_id} ({_scope(run)}) {run.status}: " + ("; ".join(run.errors) or "see its event log")
                )
            for check in run.failed_checks:
                if check["severity"] == "ERROR":
                    out.append(f"{check['asset']} ({check['check']}): {check['description']}")
        return out

    def as_dict(self) -> dict:
        return {
            "cycle_id": self.cycle_id,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "now": self.now.isoformat(),
            "hours": len(self.hours),
            "ok": not self.problems,
            "problems": self.problems,
            "corrections": self.corrections,
            **self.summary,
            "runs": [
                {
                    "run_id": r.run_id,
                    "job": r.job_name,
                    "scope": _scope(r),
                    "status": r.status,
                    "launched_by": r.launched_by,
                    "seconds": round(r.seconds, 3),
                    "failed_steps": r.failed_steps,
                    "failed_checks": r.failed_checks,
                    "errors": r.errors,
                }
                for r in self.runs
            ],
        }


def _scope(run: RunOutcome) -> str:
    tags = run.tags
    if RANGE_START_TAG in tags:
        return f"hours {tags[RANGE_START_TAG]} to {tags[RANGE_END_TAG]}"
    if "dagster/partition" in tags:
        return f"hour {tags['dagster/partition']}"
    return run.job_name


def _range_tags(start: datetime, end: datetime) -> dict[str, str]:
    """The tags of one ranged run over the hours [start, end): its first and last partition keys."""
    return {RANGE_START_TAG: Hour.of(start).key, RANGE_END_TAG: (Hour.of(end) - 1).key}


def chunks(start: datetime, end: datetime, size: int) -> list[tuple[datetime, datetime]]:
    """[start, end) cut into consecutive windows of at most ``size`` hours."""
    out, h = [], start
    while h < end:
        out.append((h, min(h + size * HOUR, end)))
        h = out[-1][1]
    return out


def consecutive_ranges(hours: list[datetime], size: int) -> list[tuple[datetime, datetime]]:
    """Sorted hours grouped into runs of consecutive hours, [start, end) of at most ``size`` hours."""
    ranges: list[tuple[datetime, datetime]] = []
    for hour in sorted(hours):
        if ranges and ranges[-1][1] == hour and ranges[-1][1] - ranges[-1][0] < size * HOUR:
            ranges[-1] = (ranges[-1][0], hour + HOUR)
        else:
            ranges.append((hour, hour + HOUR))
    return ranges


def stale_hours_outside(conn, instance, start: datetime, end: datetime, now: datetime) -> list[str]:
    """Hours outside [start, end) that a correction left unsettled (rentals or re-ingestion)."""
    import dagster as dg

    from billing_pipeline.core.asset_keys import LEDGER
    from billing_pipeline.ingestion.assets import MACHINE_RENTAL_HOURS, METRIC_HOURS
    from billing_pipeline.orchestration.graph import stale_rental_partitions

    stale = set(stale_rental_partitions(conn, now))
    materialized = dg.DagsterEventType.ASSET_MATERIALIZATION
    settled = instance.get_latest_storage_id_by_partition(LEDGER, materialized)
    for key in (METRIC_HOURS, MACHINE_RENTAL_HOURS):
        for partition, storage_id in instance.get_latest_storage_id_by_partition(key, materialized).items():
            if settled.get(partition, 0) < storage_id:
                stale.add(partition)
    return sorted(k for k in stale if not (start <= Hour.parse(k).start < end) and Hour.parse(k).start < now)


def run_billing_window(
    start: datetime | str,
    end: datetime | str,
    now: datetime | str | None = None,
    *,
    instance=None,
    database_url: str | None = None,
    chunk_hours: int = CHUNK_HOURS,
    asset_selection=None,
    on_progress: Callable[[str], None] | None = None,
) -> CycleResult:
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
            # Resolved against the code location the runs are launched in (the same code), not by
            # importing the Definitions, which stand above the runner.
            selection = list(settlement_after_rentals.resolve(launcher.repository.asset_graph))
            ranges = consecutive_ranges([Hour.parse(k).start for k in result.corrections], chunk_hours)
            for i, (lo, hi) in enumerate(ranges, 1):
                launcher.on_progress = lambda line, i=i, lo=lo: say(
                    f"corrections {i}/{len(ranges)} from {lo:%Y-%m-%d %H:00}: {line}"
                )
                result.runs.append(
                    launcher.run(
                        "hourly_billing_job",
                        asset_selection=selection,
                        label="",
                        tags={**tags, **_range_tags(lo, hi), "billing/stage": "correction"},
                    )
                )
        done_hours = 0
        for n, (lo, hi) in enumerate(windows, 1):
            hours = len(hours_between(lo, hi))

            def progress(line: str, n=n, done=done_hours) -> None:
                elapsed = time.monotonic() - began
                left = f", ~{elapsed / done * (total_hours - done):.0f} s left" if done else ""
                say(f"[{elapsed:6.1f} s] chunk {n}/{len(windows)} ({done} of {total_hours} hours done{left}): {line}")

            launcher.on_progress = progress
            run = launcher.run(
                "hourly_billing_job", asset_selection=asset_selection, tags={**tags, **_range_tags(lo, hi)}, label=""
            )
            result.runs.append(run)
            done_hours += hours
            say(
                f"[{time.monotonic() - began:6.1f} s] {done_hours} of {total_hours} hours: run {run.run_id[:8]} "
                f"{run.status}"
            )
            if not run.success:
                break
        result.summary = summarise(conn, marks, start, end)
    return result


class CycleError(BillingError):
    """The cycle ran with problems; ``result`` holds what it did."""

    def __init__(self, result: CycleResult) -> None:
        super().__init__("; ".join(result.problems))
        self.result = result
