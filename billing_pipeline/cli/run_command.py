"""`billing run --start ISO --end ISO [--now ISO]`: the hourly cycle for [start, end), through Dagster.

The runs are ordinary runs of the Dagster instance in ``DAGSTER_HOME``: queued for the daemon
when one is running, executed by this process otherwise (``orchestration.launcher``); either way
they show in the web UI under ``hourly_billing_job``. Progress goes to stderr; the result is a
summary in words, or with ``--json`` one JSON document on stdout and nothing else. Dagster's and
dbt's own output goes to the runs' event logs and to a log file the summary names.
"""

from __future__ import annotations

import logging
import os
import sys
from contextlib import redirect_stderr, redirect_stdout

from billing_pipeline.cli.output import credits, emit
from billing_pipeline.core.errors import ConfigurationError
from billing_pipeline.core.times import parse_time


def register(subparsers, json_parent) -> None:
    p = subparsers.add_parser(
        "run",
        parents=[json_parent],
        help="run the hourly cycle for the hours in [start, end) through Dagster",
        description="Run the hourly billing cycle (ingestion, dbt, settlement, top-ups, lifecycle, alerts) "
        "through the Dagster instance for every UTC hour in [--start, --end), as the schedule would.",
    )
    p.add_argument("--start", required=True, help="first hour, ISO 8601 (e.g. 2025-03-01T00:00Z)")
    p.add_argument("--end", required=True, help="end of the window (exclusive), ISO 8601, on an hour")
    p.add_argument("--now", help="the clock the runs see: lifecycle deadlines, ongoing rentals (default: now)")
    p.add_argument("--chunk-hours", type=int, default=24, help="hours per Dagster run (default 24)")
    p.add_argument(
        "--only",
        metavar="STAGE[,STAGE]",
        help="run only these stages of the cycle: ingestion, dbt, ledger, payments, lifecycle, alerts "
        "(default: all; corrections outside the window are then not run)",
    )
    p.set_defaults(handler=_run)


def _log_file():
    from billing_pipeline.db.connection import state_dir

    path = state_dir() / "run.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _run(args) -> int:
    from billing_pipeline.db.connection import database_url
    from billing_pipeline.orchestration.cycle import CycleError, run_billing_window, validate_window

    start, end, now = validate_window(args.start, args.end, args.now)  # input errors before anything else
    if args.chunk_hours < 1:
        from billing_pipeline.core.errors import InputError

        raise InputError(f"--chunk-hours {args.chunk_hours} must be at least 1")
    selection = _only(args.only)
    # The runs' resources read BILLING_DATABASE_URL themselves (definitions.py, dg.EnvVar).
    url = database_url()
    if not os.environ.get("PROMETHEUS_URL"):
        raise ConfigurationError(
            "PROMETHEUS_URL is not set: the ingestion stage reads pod metrics from Prometheus. "
            "Set PROMETHEUS_URL=http://HOST:PORT and run again."
        )
    log_path = _log_file()

    # Dagster's and dbt's console output goes to the log file; the runs' event logs keep it all.
    terminal = sys.stderr
    with open(log_path, "a") as log, redirect_stdout(log), redirect_stderr(log):
        handler = logging.StreamHandler(log)
        root = logging.getLogger()
        root.addHandler(handler)
        try:
            result = run_billing_window(
                start,
                end,
                now,
                database_url=url,
                chunk_hours=args.chunk_hours,
                asset_selection=selection,
                on_progress=lambda line: print(f"billing run: {line}", file=terminal, flush=True),
            )
        finally:
            root.removeHandler(handler)
    data = {**result.as_dict(), "log_file": str(log_path)}
    emit(args, data, render)
    if result.problems:
        raise CycleError(result)
    return 0


def _only(value: str | None):
    """``--only`` as the asset keys of those stages, or None for the whole cycle."""
    if not value:
        return None
    from billing_pipeline.core.errors import InputError
    from billing_pipeline.orchestration.graph import STAGE_GROUPS, stage_selection

    stages = [s.strip() for s in value.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGE_GROUPS]
    if unknown or not stages:
        raise InputError(
            f"--only {value!r}: unknown stage(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(STAGE_GROUPS)}"
        )
    from billing_pipeline.definitions import defs

    return sorted(stage_selection(stages).resolve(defs.resolve_asset_graph()), key=lambda k: k.path)


def render(d: dict) -> str:
    lines = [
        f"Hourly cycle {d['cycle_id']}: {d['hours']} hour(s) from {_t(d['start'])} to {_t(d['end'])} UTC, "
        f"clock {_t(d['now'])} UTC."
    ]
    if d["corrections"]:
        lines.append(
            f"Corrections settled outside the window: {len(d['corrections'])} hour(s) "
            f"({', '.join(d['corrections'][:6])}{' ...' if len(d['corrections']) > 6 else ''})."
        )
    for r in d["runs"]:
        lines.append(
            f"  run {r['run_id'][:8]}  {r['scope']:<44} {r['status']:<8} {r['seconds']:7.1f} s  ({r['launched_by']})"
        )
    p = d["posted"]
    lines.append(
        f"Posted {p['entries']} ledger entr{'y' if p['entries'] == 1 else 'ies'}, net "
        f"{credits(p['net_amount'])} credits:"
    )
    for t, v in p["by_type"].items():
        lines.append(f"  {t:<16} {v['entries']:>6}  {credits(v['amount'])}")
    states = d["accounts_by_state"]
    lines.append(
        "Accounts by state: "
        + (
            "; ".join(f"{s} {len(a)} ({', '.join(a[:5])}{' ...' if len(a) > 5 else ''})" for s, a in states.items())
            or "none evaluated"
        )
    )
    m = d["metrics"]
    lines.append(f"Metrics complete for {m['complete']} of {m['hours']} hour(s).")
    for c in m["incomplete"]:
        lines.append(f"  incomplete {_t(c['hour'])}: " + "; ".join(c["problems"]))
    if d["quarantined"]:
        lines.append(f"Quarantined rows waiting for a person: {len(d['quarantined'])}")
        lines += [f"  {q['table']} {q['id']}: {q['reason']}" for q in d["quarantined"][:20]]
    if d["notices_queued"]:
        lines.append(f"Notices queued: {len(d['notices_queued'])}")
        lines += [f"  {n['account']}: {n['subject']}" for n in d["notices_queued"][:20]]
    if d["failed_deliveries"]:
        lines.append(f"Deliveries failing (retried with backoff): {len(d['failed_deliveries'])}")
        lines += [
            f"  {f['account']} by {f['channel']} to {f['target']}: {f['error']}" for f in d["failed_deliveries"][:20]
        ]
    if d["cluster_actions"]:
        lines.append(f"Cluster actions: {len(d['cluster_actions'])}")
        lines += [f"  {a['account']} {a['action']} {a['outcome']}" for a in d["cluster_actions"][:20]]
    warnings = [
        f"{c['asset']} ({c['check']}): {c['description']}"
        for r in d["runs"]
        for c in r["failed_checks"]
        if c["severity"] == "WARN"
    ]
    if warnings:  # e.g. a step skipped because its integration is not configured
        lines.append("Warnings (the exit status stays 0):")
        lines += [f"  {w}" for w in warnings[:20]]
    if d["problems"]:
        lines.append("Problems (exit status 1):")
        lines += [f"  {p}" for p in d["problems"]]
    lines.append(f"Dagster and dbt output: {d['log_file']} (and each run's event log in the UI).")
    return "\n".join(lines)


def _t(value) -> str:
    if isinstance(value, str):
        value = parse_time(value)
    return f"{value:%Y-%m-%d %H:%M}"
