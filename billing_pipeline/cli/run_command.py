"""`billing run --start ISO --end ISO [--now ISO]`: the hourly cycle for [start, end), through Dagster.

Every stage of ``orchestration.cycle.STAGES`` runs, hour by hour, as the schedules would run it;
``--now`` sets the clock the runs see (ongoing rentals, lifecycle deadlines). Runs are recorded
on the DagsterInstance of ``DAGSTER_HOME`` when set. Needs ``BILLING_DATABASE_URL`` (or the local
fallback) and ``PROMETHEUS_URL``.
"""

from __future__ import annotations

import os

from billing_pipeline.cli.output import emit, to_json
from billing_pipeline.db.connection import connect, database_url
from billing_pipeline.errors import ConfigurationError


def register(subparsers, json_parent) -> None:
    p = subparsers.add_parser(
        "run", parents=[json_parent],
        help="run the hourly cycle (ingestion, ...) for the hours in [start, end) through Dagster",
        description="Run the hourly billing cycle through Dagster for every UTC hour in [--start, --end).",
    )
    p.add_argument("--start", required=True, help="first hour, ISO 8601 (e.g. 2025-03-01T00:00Z)")
    p.add_argument("--end", required=True, help="end of the window (exclusive), ISO 8601, on an hour")
    p.add_argument("--now", help="the clock the runs see (default: the current time)")
    p.set_defaults(handler=_run)


def _completeness(url: str, start, end) -> list[dict]:
    with connect(url) as conn:
        rows = conn.execute(
            "SELECT hour, complete, problems FROM billing.metric_hours WHERE hour >= %s AND hour < %s ORDER BY hour",
            (start, end),
        ).fetchall()
    return [{"hour": h, "complete": c, "problems": p} for h, c, p in rows]


def _run(args) -> int:
    from billing_pipeline.orchestration.cycle import CycleError, run_hourly_cycle, validate_window

    start, end, now = validate_window(args.start, args.end, args.now)  # input errors before anything else
    url = database_url()
    os.environ["BILLING_DATABASE_URL"] = url  # the Dagster resources read it from the environment
    if not os.environ.get("PROMETHEUS_URL"):
        raise ConfigurationError(
            "PROMETHEUS_URL is not set: the ingestion stage reads pod metrics from Prometheus. "
            "Set PROMETHEUS_URL=http://HOST:PORT and run again."
        )
    try:
        result = run_hourly_cycle(start, end, now, log_level="CRITICAL")
    except CycleError as exc:
        if args.json:
            print(to_json({**exc.result.as_dict(), "error": str(exc)}))
        else:
            for r in exc.result.corrections + exc.result.runs:
                print(_line(r))
        raise
    data = result.as_dict()
    data["completeness"] = _completeness(url, start, end)

    def render(d) -> str:
        lines = [f"Hourly cycle {d['cycle_id']}: {d['hours']} hour(s) from {start:%Y-%m-%d %H:%M} "
                 f"to {end:%Y-%m-%d %H:%M} UTC, clock {now:%Y-%m-%d %H:%M:%S} UTC."]
        if result.corrections:
            lines.append(f"Re-sliced {len(result.corrections)} rental hour(s) touched by corrections:")
            lines += ["  " + _line(r) for r in result.corrections]
        lines += ["  " + _line(r) for r in result.runs]
        incomplete = [c for c in d["completeness"] if not c["complete"]]
        lines.append(f"Metrics complete for {len(d['completeness']) - len(incomplete)} of {d['hours']} hour(s).")
        for c in incomplete:
            lines.append(f"  incomplete {c['hour']:%Y-%m-%d %H:00}: " + "; ".join(c["problems"]))
        return "\n".join(lines)

    emit(args, data, render)
    return 0


def _line(r) -> str:
    status = "ok" if r.success else "FAILED"
    return f"{r.hour:%Y-%m-%d %H:00}  {r.stage:<20} {status:<6} run {r.run_id[:8]}  {r.seconds:.1f}s"
