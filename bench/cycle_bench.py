"""The whole hourly cycle through ``run_billing_window``, for windows of 1, 3 and 168 hours.

Usage: .venv/bin/python bench/cycle_bench.py [--deployments 200] [--windows 1,3,168] [--chunk-hours 24] [--rebuild]

What it measures: ``billing.orchestration.cycle.run_billing_window(start, start + N h, now=start + N h + 1 h)``
on a fresh Dagster instance (an empty DAGSTER_HOME in a temp folder: sqlite storage) and a fresh
scratch database, so each window is a catch-up of N hours: ingestion from a real Prometheus,
dbt (usage models), settlement into the ledger, top-ups, lifecycle, dbt (ledger models), alerts
and deliveries, in ranged runs of ``hourly_billing_job`` of at most ``--chunk-hours`` hours.

The synthetic cluster (``devkit.synthetic.generated_cluster``, deterministic): 2 pods
per deployment, one account per 5 deployments, one node per 16 deployments, one machine rental
per 5 accounts (types ``gpu-large`` / ``cpu-medium``), covering the longest window from
2025-06-02T00:00Z. It is backfilled once with promtool into
``bench/.cache/cycle-<deployments>-<hours>/tsdb`` (gitignored) and served by ``PrometheusServer``.
Every window starts at the same hour, so the 1- and 3-hour windows read the same TSDB.

Each window's database ``satusky_bench_cycle_<pid>`` on BILLING_BENCH_SERVER (default 127.0.0.1:5432)
is dropped, migrated, and given the platform rows, a price for every resource and every rented
machine type, and an opening credit of 10,000 per account (enough for every account to stay
healthy over a week). ``BILLING_LIFECYCLE_DRY_RUN=1`` keeps the lifecycle away from any cluster.

Per-stage seconds come from each run's event log (first STEP_START to last STEP_SUCCESS of the
stage's steps, summed over the window's runs); "run overhead" is the runs' wall time outside
any step (run start-up, code-location load, execution plan). A markdown table is printed and
the figures are written to ``bench/results/cycle-<timestamp>.json``.

Aims (issue "Ranged runs"): 3 hours <= 1.5x one hour on a small scenario; 168 hours at 10,000
deployments in under 10 minutes.
"""

from __future__ import annotations

import argparse
import json
import os

# The scratch database's entries are chained under a key of their own unless one is given.
os.environ.setdefault("BILLING_LEDGER_KEY", "bench-scratch-ledger-key-not-a-secret-0123456789")
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

from billing_pipeline.db.connection import connect, make_conninfo_url  # noqa: E402
from billing_pipeline.db.migrate import upgrade  # noqa: E402
from devkit.synthetic import PrometheusServer, generated_cluster, write_platform_rows  # noqa: E402
from tsdb_cache import cached_tsdb  # noqa: E402  (bench/, beside this script)

UTC = timezone.utc
H = timedelta(hours=1)
START = datetime(2025, 6, 2, tzinfo=UTC)
RESULTS = Path(__file__).resolve().parent / "results"
DB = f"satusky_bench_cycle_{os.getpid()}"  # per process: two benches at once must not drop each other's database
OPENING_CREDIT = Decimal("10000")
PRICES = [  # (id, resource, unit, price, basis, machine_type)
    ("cpu", "cpu", "core_hour", "0.04", "max_request_usage", None),
    ("mem", "memory", "gib_hour", "0.005", "usage", None),
    ("gpu", "gpu", "gpu_hour", "1.5", "usage", None),
    ("sto", "storage", "gib_hour", "0.0002", "usage", None),
    ("egr", "network_egress", "gib", "0.08", "usage", None),
]
MACHINE_PRICES = {"gpu-large": "2.40", "cpu-medium": "0.30"}
# Stages by the step keys of hourly_billing_job (matched in this order, by substring).
STAGES = [
    ("ingestion", ("prometheus_metric_hours", "machine_rentals")),
    ("dbt_usage_models", ("dbt_usage_models",)),
    ("dbt_ledger_models", ("dbt_ledger_models",)),
    ("settlement", ("credit_transactions", "ledger")),
    ("top-ups", ("topup",)),
    ("lifecycle", ("lifecycle",)),
    ("alerts", ("balance_alert",)),
    ("deliveries", ("deliver",)),
]
COLUMNS = ["ingestion", "dbt_usage_models", "settlement", "top-ups", "lifecycle", "dbt_ledger_models", "alerts",
           "deliveries", "other"]


def cluster_for(deployments: int, hours: int):
    return generated_cluster(START, hours * 60, pods=2 * deployments, pods_per_deployment=2,
                             accounts=max(1, deployments // 5), nodes=max(1, deployments // 16))


def prepare_tsdb(deployments: int, hours: int, rebuild: bool) -> tuple[Path, dict]:
    return cached_tsdb(f"cycle-{deployments}-{hours}", lambda: cluster_for(deployments, hours),
                       {"deployments": deployments, "hours": hours, "start": START.isoformat()}, rebuild)


def server_parts() -> tuple[str, int]:
    host = os.environ.get("BILLING_BENCH_SERVER", "127.0.0.1:5432")
    h, _, port = host.partition(":")
    return h, int(port or 5432)


def drop_database() -> None:
    h, port = server_parts()
    with psycopg.connect(make_conninfo_url(host=h, port=port, dbname="postgres"), autocommit=True) as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB)))


def scratch_database(cluster) -> str:
    """A migrated database with the platform rows, prices and opening credit."""
    from billing_pipeline.ledger import Entry, post_entries

    drop_database()
    h, port = server_parts()
    url = make_conninfo_url(host=h, port=port, dbname=DB)
    upgrade(url)
    machine_types = sorted({r.machine_type for r in cluster.rentals})
    prices = PRICES + [(f"m-{t}", "machine", "machine_hour", MACHINE_PRICES.get(t, "1.00"), "usage", t)
                       for t in machine_types]
    with connect(url) as conn:
        write_platform_rows(conn, cluster)
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO billing.pricing_configs (id, resource, machine_type, unit, unit_price, basis, "
                "effective_from) VALUES (%s, %s, %s, %s, %s, %s, '2025-01-01')",
                [(pid, res, mt, unit, Decimal(price), basis) for pid, res, unit, price, basis, mt in prices])
        conn.commit()
        post_entries(conn, [Entry(a.id, "topup", OPENING_CREDIT, f"opening-{a.id}") for a in cluster.accounts])
        conn.commit()
    return url


def stage_of(step_key: str) -> str:
    for stage, needles in STAGES:
        if any(n in step_key for n in needles):
            return stage
    return "other"


def step_timings(instance, run_id: str) -> dict:
    """Per step: start, end (epoch seconds) from the run's event log; and the run's own span."""
    from dagster._core.events import DagsterEventType

    types = {DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE,
             DagsterEventType.RUN_START, DagsterEventType.RUN_SUCCESS, DagsterEventType.RUN_FAILURE}
    steps: dict[str, dict] = {}
    run_span = {}
    for record in instance.get_records_for_run(run_id, of_type=types, limit=100_000).records:
        entry = record.event_log_entry
        event = entry.dagster_event
        kind = event.event_type_value
        if kind == "RUN_START":
            run_span["start"] = entry.timestamp
        elif kind in ("RUN_SUCCESS", "RUN_FAILURE"):
            run_span["end"] = entry.timestamp
        elif kind == "STEP_START":
            steps.setdefault(event.step_key, {})["start"] = entry.timestamp
        else:
            steps.setdefault(event.step_key, {})["end"] = entry.timestamp
    return {"steps": steps, "run": run_span}


def stage_seconds(timings: list[dict]) -> tuple[dict[str, float], dict[str, float], float]:
    """Seconds per stage (span of its steps in each run, summed over runs), per step, and in steps."""
    stages: dict[str, float] = {}
    per_step: dict[str, float] = {}
    in_steps = 0.0
    for t in timings:
        spans: dict[str, list[float]] = {}
        intervals = []
        for key, s in t["steps"].items():
            if "start" not in s or "end" not in s:
                continue
            per_step[key] = per_step.get(key, 0.0) + s["end"] - s["start"]
            lo_hi = spans.setdefault(stage_of(key), [s["start"], s["end"]])
            lo_hi[0], lo_hi[1] = min(lo_hi[0], s["start"]), max(lo_hi[1], s["end"])
            intervals.append((s["start"], s["end"]))
        for stage, (lo, hi) in spans.items():
            stages[stage] = stages.get(stage, 0.0) + hi - lo
        # union of the step intervals: time some step was executing
        intervals.sort()
        cur_lo = cur_hi = None
        for lo, hi in intervals:
            if cur_hi is None or lo > cur_hi:
                if cur_hi is not None:
                    in_steps += cur_hi - cur_lo
                cur_lo, cur_hi = lo, hi
            else:
                cur_hi = max(cur_hi, hi)
        if cur_hi is not None:
            in_steps += cur_hi - cur_lo
    return stages, per_step, in_steps


def run_window(hours: int, cluster, prom_url: str, chunk_hours: int) -> dict:
    import dagster as dg

    from billing_pipeline.orchestration.cycle import run_billing_window

    t0 = time.monotonic()
    url = scratch_database(cluster)
    setup_seconds = time.monotonic() - t0
    os.environ["BILLING_DATABASE_URL"] = url
    home = Path(tempfile.mkdtemp(prefix="cycle-bench-dagster-"))
    os.environ["DAGSTER_HOME"] = str(home)
    progress: list[tuple[float, str]] = []
    began = time.monotonic()

    def on_progress(line: str) -> None:
        progress.append((round(time.monotonic() - began, 2), line))
        if " hours: run " in line or "FAILED" in line:
            print(f"    {line}", flush=True)

    load_before = os.getloadavg()
    try:
        with dg.DagsterInstance.get() as instance:
            t0 = time.monotonic()
            result = run_billing_window(START, START + hours * H, now=START + (hours + 1) * H, instance=instance,
                                        database_url=url, chunk_hours=chunk_hours, on_progress=on_progress)
            wall = time.monotonic() - t0
            timings = [step_timings(instance, r.run_id) for r in result.runs]
    finally:
        shutil.rmtree(home, ignore_errors=True)
    load_after = os.getloadavg()
    stages, per_step, in_steps = stage_seconds(timings)
    run_seconds = sum(r.seconds for r in result.runs)
    with connect(url) as conn:
        counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in (
            "billing.metric_container_hours", "analytics.fct_priced_usage", "billing.credit_transactions")}
    summary = result.summary
    return {
        "hours": hours, "wall_seconds": round(wall, 2), "seconds_per_hour": round(wall / hours, 3),
        "setup_seconds": round(setup_seconds, 2),
        "runs": len(result.runs), "run_seconds": [round(r.seconds, 2) for r in result.runs],
        "statuses": [r.status for r in result.runs], "launched_by": sorted({r.launched_by for r in result.runs}),
        "problems": result.problems, "ok": not result.problems,
        "corrections": result.corrections,
        "stage_seconds": {k: round(v, 2) for k, v in stages.items()},
        "step_seconds": {k: round(v, 2) for k, v in sorted(per_step.items())},
        "in_steps_seconds": round(in_steps, 2),
        "run_overhead_seconds": round(run_seconds - in_steps, 2),
        "outside_runs_seconds": round(wall - run_seconds, 2),
        "entries_posted": summary.get("posted", {}).get("entries"),
        "entries_by_type": {t: v["entries"] for t, v in summary.get("posted", {}).get("by_type", {}).items()},
        "metric_hours": summary.get("metrics", {}),
        "accounts_by_state": {k: len(v) for k, v in summary.get("accounts_by_state", {}).items()},
        "row_counts": counts,
        "loadavg_before": [round(x, 2) for x in load_before], "loadavg_after": [round(x, 2) for x in load_after],
        "progress": progress,
    }


def markdown(report: dict) -> str:
    rows = report["windows"]
    base = next((r for r in rows if r["hours"] == 1), rows[0])
    present = [s for s in COLUMNS if any(s in r["stage_seconds"] for r in rows)]
    head = ["window (h)", "runs", "wall s", "s / hour", f"ratio to {base['hours']} h", *present,
            "run overhead", "outside runs", "entries", "ok", "load avg (1 min)"]
    out = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        cells = [str(r["hours"]), str(r["runs"]), f"{r['wall_seconds']:.1f}", f"{r['seconds_per_hour']:.2f}",
                 f"{r['wall_seconds'] / base['wall_seconds']:.2f}",
                 *[f"{r['stage_seconds'].get(s, 0):.1f}" for s in present],
                 f"{r['run_overhead_seconds']:.1f}", f"{r['outside_runs_seconds']:.1f}",
                 str(r["entries_posted"]), "yes" if r["ok"] else "NO",
                 f"{r['loadavg_before'][0]:.1f} -> {r['loadavg_after'][0]:.1f}"]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deployments", type=int, default=200)
    parser.add_argument("--windows", default="1,3,168", help="window sizes in hours, comma-separated")
    parser.add_argument("--chunk-hours", type=int, default=24)
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cached TSDB")
    args = parser.parse_args()
    windows = [int(w) for w in args.windows.split(",") if w.strip()]
    longest = max(windows)

    # Dagster's compute-log capture stops its `tail -F` children with SIGTERM and waits 30 s for
    # each: a SIGTERM ignored by whatever started this process (nohup-style job control does) is
    # inherited by them and adds 60 s to every run. Restore the default before any run.
    for sig in (signal.SIGTERM, signal.SIGINT):
        if signal.getsignal(sig) == signal.SIG_IGN:
            signal.signal(sig, signal.SIG_DFL if sig == signal.SIGTERM else signal.default_int_handler)
    os.environ["BILLING_FIRST_HOUR"] = START.isoformat()
    os.environ.setdefault("BILLING_LIFECYCLE_DRY_RUN", "1")
    tsdb, built = prepare_tsdb(args.deployments, longest, args.rebuild)
    cluster = cluster_for(args.deployments, longest)
    report = {
        "deployments": args.deployments, "pods": len(cluster.pods), "accounts": len(cluster.accounts),
        "nodes": len(cluster.nodes()), "rentals": len(cluster.rentals), "chunk_hours": args.chunk_hours,
        "start": START.isoformat(), "tsdb": {"path": str(tsdb), **built},
        "machine": {"host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "postgres": os.environ.get("BILLING_BENCH_SERVER", "127.0.0.1:5432")},
        "git": subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True).stdout.strip(),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "windows": [],
    }
    print(f"{args.deployments} deployments, {len(cluster.pods)} pods, {len(cluster.accounts)} accounts, "
          f"{len(cluster.nodes())} nodes, {len(cluster.rentals)} rentals; windows {windows} h, "
          f"chunks of {args.chunk_hours} h; load average {os.getloadavg()}", flush=True)
    with PrometheusServer(tsdb) as prom:
        os.environ["PROMETHEUS_URL"] = prom.url
        for hours in windows:
            print(f"  window of {hours} h ...", flush=True)
            row = run_window(hours, cluster, prom.url, args.chunk_hours)
            report["windows"].append(row)
            print(f"  window of {hours} h: {row['wall_seconds']:.1f}s wall, {row['runs']} runs, "
                  f"{row['entries_posted']} entries, stages {row['stage_seconds']}, problems {row['problems']}",
                  flush=True)
    drop_database()
    report["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    table = markdown(report)
    print()
    print(f"{args.deployments} deployments ({len(cluster.pods)} pods, {len(cluster.accounts)} accounts), "
          f"chunks of {args.chunk_hours} h, {os.cpu_count()} CPUs")
    print(table)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"cycle-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps({**report, "table": table}, indent=2, default=str))
    print(f"\nwritten to {out}")
    return 0 if all(r["ok"] for r in report["windows"]) else 1


if __name__ == "__main__":
    sys.exit(main())
