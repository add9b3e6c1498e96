"""The whole hourly cycle at fleet scale, stage by stage against its floor; month-end; a catch-up;
and the hourly cycle again with 1, 30 and 365 days of history (issue 14).

Usage (the full run; every section is also selectable alone):
    .venv/bin/python bench/cycle_bench.py [--deployments 10000] [--pods-per-deployment 3]
        [--accounts 2000] [--rentals 2000] [--nodes N] [--hourly] [--month-end]
        [--catch-up [HOURS]] [--catch-up-deployments 300] [--growth [1,30,365]]
        [--dense-days 30] [--reuse] [--rebuild] [--chunk-hours 24] [--small-run [RUNS]]
        [--daemon-run [RUNS]]
With no section flag every section runs (hourly, month-end, catch-up of 168 h, growth 1,30,365).

Platform: ``devkit.synthetic.generated_cluster`` (deterministic) with
``deployments x pods-per-deployment`` pods, ``accounts`` accounts (deployment d belongs to
account d mod accounts), ``nodes`` nodes (default deployments / 16) and ``rentals`` rented
machines (built here: rental n belongs to account n mod accounts, ``gpu-large`` for odd n,
``cpu-medium`` for even n, rented from an hour before the start; the scenario itself makes one
rental per 5 accounts). Its Prometheus data from 2025-06-02T00:00Z is backfilled once with
promtool into ``bench/.cache/<name>/tsdb`` (bench/tsdb_cache.py) and served by a real
Prometheus. Each measurement uses a scratch database on BILLING_BENCH_SERVER (default
127.0.0.1:5432): migrated, platform rows, a price for every resource and machine type, an
opening credit of 10,000 per account; and a throw-away Dagster instance (PostgreSQL, as production, in a temp
DAGSTER_HOME). ``BILLING_LIFECYCLE_DRY_RUN=1`` keeps the lifecycle away from any cluster.

Sections:
- hourly: a warm-up hour (00:00) through ``run_billing_window``, then the measured hour
  ``run_billing_window(01:00, 02:00, now=03:00)`` on a fresh instance: a steady-state hour,
  not the first. Per stage (ingestion, dbt_usage_models, settlement, top-ups, lifecycle,
  dbt_ledger_models, alerts, deliveries) the seconds from the run's event log (first STEP_START
  to last STEP_SUCCESS of the stage's steps); "run overhead" is the run's wall time outside any
  step (start-up, code-location load, plan). Next to each stage its floor, timed alone on the
  same database right after the cycle, and the ratio stage / floor. Floors are defined in
  bench/floors.py: ingestion = the hour's aggregated PromQL over the HTTP API + a COPY of the
  hour's ingested rows; dbt = the models' execution time as dbt reports it (dagster-dbt's "Execution Duration"
  on each model's materialization);
  settlement = SELECT of the hour's charges from fct_usage_charges + INSERT of the posted
  number of rows into a temp ledger; top-ups / alerts / lifecycle = each module's selection of
  the accounts that qualify.
- cold hour (with ``--hourly``): the same hour again on a new scratch database, after the
  warm-up hour, but as a fresh ``billing run`` process: what a run pays when nothing is warm
  (Python's and dbt's imports, the code location, dbt's parse), as each daemon-launched run
  does. The hourly section's measured hour runs in this process after the warm-up hour, as a
  ranged ``billing run`` does from its second hour on.
- month-end: ``run_month_end`` (SLA credits, then invoices, through Dagster) for
  ``--month-end-accounts`` accounts (default ``--accounts``) on bench/month_end_bench.py's
  set-up (a month of hourly usage settled into the ledger, probes, grace periods; about 9 min
  for 2,000 accounts, kept between runs with ``--reuse``). Aim: under 120 s.
- catch-up: ``--catch-up`` hours (default 168) from 00:00 in ranged runs of ``--chunk-hours``,
  at ``--catch-up-deployments`` (default 300; accounts, rentals and nodes scaled in
  proportion): the TSDB is built from OpenMetrics text of about 7.5 GB per 60,000 pod-hours
  (measured: 30,000 pods x 2 h), so a week at 10,000 deployments would be about 630 GB. The text
  is written and backfilled in slices of deployments of at most BILLING_BENCH_TEXT_GB (default 6)
  each (bench/tsdb_cache.py), so the disk holds one slice at a time; what limits the scale is the
  build time (a day at 10,000 deployments: 16 slices, 36 min). With ``--catch-up-deployments``
  equal to ``--deployments`` the catch-up is measured at full scale, against its floors over the
  same hours and against the hourly section's hour. Below full scale it is EXTRAPOLATED, and labelled so: the measured seconds split into
  the part that grows with the platform (ingestion, dbt model time, settlement, top-ups,
  lifecycle, alerts, deliveries: multiplied by deployments / catch-up-deployments) and the fixed
  part (run overhead, dbt start-up = dbt stage minus model time, time outside runs: kept as is,
  the number of runs being the same).
- growth: the hourly section with 1, 30, 365 days of history loaded before the measured hour
  (bench/history.py: the warm-up hour's rows copied back in SQL into the ingestion tables and
  the dbt incremental tables; ledger entries through the batch ``post_entries``; hourly for the
  last ``--dense-days`` days, one copy per day beyond, so 365 days fit on the disk). Prints the
  hour per history size and the ratio of the longest to the shortest (aim: within 20 %).
  ``--reuse`` keeps each loaded database as a template ``satusky_bench_cycle_h_<scale>_<days>d``.
- small run (``--small-run [3]``): a 3-account platform, its first hour once, then each next hour
  as a fresh ``billing run`` process: wall and CPU time of each (issue 24: aim < 6 s). After each,
  the same hour's floor as a fresh process (``bench/small_run_floor.py``: the libraries' imports
  and the hour's two dbt builds, none of the run's own work), and the run's ratio to it.
- daemon run (``--daemon-run [3]``): the same platform, but the runs after the first are queued
  and launched by ``dagster-daemon run -w workspace.yaml`` on the scratch instance (schedules and
  sensors stopped): launch latency and execution from each run's event log.

Output: markdown tables (stage, time, floor, ratio) and sections for month-end, catch-up and
growth, with host, CPUs, load average before/after each section and the git commit; the figures
in ``bench/results/cycle-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os

# The scratch database's entries are chained under a key of their own unless one is given.
os.environ.setdefault("BILLING_LEDGER_KEY", "bench-scratch-ledger-key-not-a-secret-0123456789")
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import floors  # noqa: E402  (bench/, beside this script)
import history  # noqa: E402
import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402
from tsdb_cache import cached_tsdb  # noqa: E402

from billing_pipeline.core.hours import Hour  # noqa: E402
from billing_pipeline.db.connection import connect, make_conninfo_url  # noqa: E402
from billing_pipeline.db.migrate import upgrade  # noqa: E402
from devkit.synthetic import PrometheusServer, generated_cluster, write_platform_rows  # noqa: E402
from devkit.synthetic.model import Rental  # noqa: E402

UTC = UTC
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
COLUMNS = [
    "ingestion",
    "dbt_usage_models",
    "settlement",
    "top-ups",
    "lifecycle",
    "dbt_ledger_models",
    "alerts",
    "deliveries",
    "other",
]
GROWING = ["ingestion", "settlement", "top-ups", "lifecycle", "alerts", "deliveries", "other"]


@dataclasses.dataclass(frozen=True)
class Scale:
    deployments: int
    pods_per_deployment: int
    accounts: int
    rentals: int
    nodes: int

    @property
    def key(self) -> str:
        return (
            f"d{self.deployments}x{self.pods_per_deployment}-a{self.accounts}-r{self.rentals}-n{self.nodes}"
        ).replace("-", "")

    def scaled_to(self, deployments: int) -> Scale:
        """The same platform shape at ``deployments`` (accounts, rentals, nodes in proportion)."""
        f = deployments / self.deployments
        return Scale(
            deployments,
            self.pods_per_deployment,
            max(1, round(self.accounts * f)),
            round(self.rentals * f),
            max(1, round(self.nodes * f)),
        )


def cluster_for(scale: Scale, hours: int):
    cluster = generated_cluster(
        START,
        hours * 60,
        pods=scale.deployments * scale.pods_per_deployment,
        pods_per_deployment=scale.pods_per_deployment,
        accounts=scale.accounts,
        nodes=scale.nodes,
    )
    # The scenario rents one machine per 5 accounts; the bench sets the number itself.
    rentals = tuple(
        Rental(
            f"rent-{n:05d}",
            cluster.accounts[n % scale.accounts].id,
            f"m-{n:05d}",
            "gpu-large" if n % 2 else "cpu-medium",
            f"rented-{n:05d}",
            START - H,
            None,
        )
        for n in range(scale.rentals)
    )
    return dataclasses.replace(cluster, rentals=rentals)


def prepare_tsdb(scale: Scale, hours: int, rebuild: bool) -> tuple[Path, dict]:
    return cached_tsdb(
        f"cycle-{scale.key}-{hours}h",
        lambda: cluster_for(scale, hours),
        {**dataclasses.asdict(scale), "hours": hours, "start": START.isoformat()},
        rebuild,
    )


def server_url(dbname: str) -> str:
    host = os.environ.get("BILLING_BENCH_SERVER", "127.0.0.1:5432")
    h, _, port = host.partition(":")
    return make_conninfo_url(host=h, port=int(port or 5432), dbname=dbname)


def admin(statement: sql.Composable, *names: str) -> None:
    with psycopg.connect(server_url("postgres"), autocommit=True) as c:
        for name in names:  # nobody may be connected to a template or a database being dropped
            c.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
        c.execute(statement)


def drop_database(name: str = DB) -> None:
    admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def copy_database(source: str, target: str) -> None:
    drop_database(target)
    admin(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(target), sql.Identifier(source)), source)


def database_exists(name: str) -> bool:
    with psycopg.connect(server_url("postgres")) as c:
        return c.execute("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = %s)", (name,)).fetchone()[0]


def scratch_database(cluster) -> str:
    """A migrated database with the platform rows, prices and opening credit."""
    from billing_pipeline.ledger import Entry, post_entries

    drop_database()
    url = server_url(DB)
    upgrade(url)
    machine_types = sorted({r.machine_type for r in cluster.rentals})
    prices = PRICES + [
        (f"m-{t}", "machine", "machine_hour", MACHINE_PRICES.get(t, "1.00"), "usage", t) for t in machine_types
    ]
    with connect(url) as conn:
        write_platform_rows(conn, cluster)
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO billing.pricing_configs (id, resource, machine_type, unit, unit_price, basis, "
                "effective_from) VALUES (%s, %s, %s, %s, %s, %s, '2025-01-01')",
                [(pid, res, mt, unit, Decimal(price), basis) for pid, res, unit, price, basis, mt in prices],
            )
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

    types = {
        DagsterEventType.STEP_START,
        DagsterEventType.STEP_SUCCESS,
        DagsterEventType.STEP_FAILURE,
        DagsterEventType.RUN_START,
        DagsterEventType.RUN_SUCCESS,
        DagsterEventType.RUN_FAILURE,
    }
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


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


DAGSTER_DB = f"{DB}_dagster"  # the Dagster storage beside the scratch database (prepare_dagster_home's name)


@contextmanager
def dagster_instance():
    """A throw-away Dagster instance as production has it: runs and events in PostgreSQL
    (``prepare_dagster_home``: database ``<scratch>_dagster``), under a temp DAGSTER_HOME."""

    from billing_pipeline.db.dagster_instance import load_instance, prepare_dagster_home

    home = Path(tempfile.mkdtemp(prefix="cycle-bench-dagster-"))
    drop_database(DAGSTER_DB)
    prepare_dagster_home(server_url(DB), home)
    try:
        with load_instance(home) as instance:
            yield instance
    finally:
        shutil.rmtree(home, ignore_errors=True)
        drop_database(DAGSTER_DB)


def run_window(url: str, start: datetime, end: datetime, chunk_hours: int) -> dict:
    """``run_billing_window(start, end, now=end + 1 h)`` on a fresh instance; its stage seconds."""
    from billing_pipeline.orchestration.cycle import run_billing_window

    os.environ["BILLING_DATABASE_URL"] = url
    began = time.monotonic()

    def on_progress(line: str) -> None:
        if " hours: run " in line or "FAILED" in line:
            print(f"      {round(time.monotonic() - began, 1)}s {line}", flush=True)

    with dagster_instance() as instance:
        t0 = time.monotonic()
        result = run_billing_window(
            start,
            end,
            now=end + H,
            instance=instance,
            database_url=url,
            chunk_hours=chunk_hours,
            on_progress=on_progress,
        )
        wall = time.monotonic() - t0
        timings = [step_timings(instance, r.run_id) for r in result.runs]
        dbt_invocations = floors.dbt_model_seconds(instance, [r.run_id for r in result.runs])
    stages, per_step, in_steps = stage_seconds(timings)
    run_seconds = sum(r.seconds for r in result.runs)
    summary = result.summary
    return {
        "window": [start.isoformat(), end.isoformat()],
        "hours": len(result.hours),
        "wall_seconds": round(wall, 2),
        "runs": len(result.runs),
        "run_seconds": [round(r.seconds, 2) for r in result.runs],
        "problems": result.problems,
        "ok": not result.problems,
        "stage_seconds": {k: round(v, 3) for k, v in stages.items()},
        "step_seconds": {k: round(v, 3) for k, v in sorted(per_step.items())},
        "run_overhead_seconds": round(run_seconds - in_steps, 3),
        "outside_runs_seconds": round(wall - run_seconds, 3),
        "entries_posted": summary.get("posted", {}).get("entries"),
        "accounts_by_state": {k: len(v) for k, v in summary.get("accounts_by_state", {}).items()},
        "dbt_invocations": dbt_invocations,
    }


def stage_floors(url: str, prom_url: str, hour: datetime, posted_after_id: int, run: dict, hours: int = 1) -> dict:
    """Every stage's floor on the database the measured window (``hours`` from ``hour``) left
    (see bench/floors.py)."""
    out: dict[str, dict] = {}
    end = hour + hours * H
    with connect(url, autocommit=True) as conn:
        if hours == 1:
            out["ingestion"] = floors.ingestion_floor(conn, prom_url, hour)
        else:
            out["ingestion"] = floors.ingestion_window_floor(conn, prom_url, [hour + i * H for i in range(hours)])
        out["settlement"] = floors.settlement_floor(conn, hour, end, posted_after_id)
        out["top-ups"] = floors.topup_floor(conn, end + H)
        out["lifecycle"] = floors.lifecycle_floor(conn)
        out["alerts"] = floors.alerts_floor(conn)
    out["dagster_step"] = dagster_step_floor()
    invocations = run["dbt_invocations"]
    # Two invocations in a one-hour run: usage models first, ledger models (balances) second.
    usage = [i for i in invocations if not i["has_balances"]]
    ledger = [i for i in invocations if i["has_balances"]]
    if usage:
        out["dbt_usage_models"] = {"seconds": sum(i["model_seconds"] for i in usage), "invocations": len(usage)}
    if ledger:
        out["dbt_ledger_models"] = {"seconds": sum(i["model_seconds"] for i in ledger), "invocations": len(ledger)}
    return out


def dagster_step_floor() -> dict:
    """What any stage pays for being a Dagster step: a partitioned asset that does nothing but
    record its materialisation, on an instance like the cycle's (PostgreSQL event log), best
    of three, STEP_START to STEP_SUCCESS."""
    import dagster as dg

    from billing_pipeline.core.partitions import hourly_partitions

    @dg.asset(partitions_def=hourly_partitions, name="bench_noop_step")
    def noop():
        return dg.MaterializeResult()

    times = []
    with dagster_instance() as instance:
        for _ in range(3):
            result = dg.materialize([noop], instance=instance, partition_key=Hour(START).key)
            step = step_timings(instance, result.run_id)["steps"]["bench_noop_step"]
            times.append(step["end"] - step["start"])
    return {"seconds": min(times), "runs": [round(t, 4) for t in times]}


def max_ledger_id(url: str) -> int:
    with connect(url) as conn:
        return conn.execute("SELECT coalesce(max(id), 0) FROM billing.credit_transactions").fetchone()[0]


def cold_hour(cluster) -> dict:
    """The measured hour as production runs it when nothing is warm: a fresh ``billing run``
    process (imports, code location, dbt imported and the project parsed inside the run), after
    a warm-up hour in this process. Wall time of the whole command, and its stages from the
    instance's event log."""
    load_before = loadavg()
    url = scratch_database(cluster)
    warm = run_window(url, START, START + H, 24)
    hour = START + H
    with dagster_instance() as instance:
        env = {**os.environ, "BILLING_DATABASE_URL": url, "DAGSTER_HOME": str(instance.root_directory)}
        process = billing_run_process(env, hour)
        runs = instance.get_run_records()
        timings = [step_timings(instance, r.dagster_run.run_id) for r in runs]
    drop_database()
    stages, per_step, _in_steps = stage_seconds(timings)
    row = {
        **process,
        "ok": process["exit_code"] == 0,
        "stage_seconds": {k: round(v, 3) for k, v in stages.items()},
        "step_seconds": {k: round(v, 3) for k, v in sorted(per_step.items())},
        "warm_up_problems": warm["problems"],
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
    }
    print(
        f"  cold hour: {row['wall_seconds']:.1f}s for the whole `billing run` process, exit {row['exit_code']}, "
        f"stages {row['stage_seconds']}",
        flush=True,
    )
    return row


SMALL = Scale(3, 1, 3, 3, 1)  # a 3-account platform: one deployment (one pod) and one rental each


def timed_process(command: list[str], env: dict, cwd: Path | None = None) -> tuple[dict, subprocess.CompletedProcess]:
    """Run ``command`` as a fresh process; its wall time and CPU time (user + sys of the process
    and every child it waited for, from ``getrusage(RUSAGE_CHILDREN)``), and what it printed."""
    load = loadavg()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.monotonic()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.monotonic() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    row = {
        "wall_seconds": round(wall, 2),
        "user_seconds": round(after.ru_utime - before.ru_utime, 2),
        "sys_seconds": round(after.ru_stime - before.ru_stime, 2),
        "exit_code": done.returncode,
        "loadavg_before": load,
    }
    row["cpu_seconds"] = round(row["user_seconds"] + row["sys_seconds"], 2)
    if done.returncode:
        row["stderr"] = done.stderr[-2000:]
    return row, done


def billing_run_process(env: dict, hour: datetime, checkout: Path | None = None) -> dict:
    """One fresh ``billing run`` process for ``hour``, timed (``timed_process``). ``checkout``: run
    that checkout's ``billing`` in its folder (bench/small_run_pairs.py), else this environment's."""
    billing = checkout / ".venv/bin/billing" if checkout else Path(sys.executable).with_name("billing")
    command = [str(billing), "run", "--start", hour.isoformat(), "--end", (hour + H).isoformat()]
    row, _done = timed_process([*command, "--now", (hour + 2 * H).isoformat()], env, cwd=checkout)
    return {"hour": hour.isoformat(), **row}


def small_run(args) -> dict:
    """One ``billing run`` of one hour on a 3-account platform as a fresh process, on an instance
    that has run before (issue 24): the first hour is run once (the instance's first run: dbt
    parses the project for this database), then each of the next ``--small-run`` hours as its own
    fresh ``billing run`` process, timed whole (wall clock of the command, and its CPU time: the
    machine is shared, so CPU time is the steadier figure)."""
    runs = args.small_run
    tsdb, _built = prepare_tsdb(SMALL, runs + 1, args.rebuild)
    cluster = cluster_for(SMALL, runs + 1)
    rows, floors = [], []
    with PrometheusServer(tsdb) as prom, dagster_instance() as instance:
        url = scratch_database(cluster)
        env = {
            **os.environ,
            "BILLING_DATABASE_URL": url,
            "PROMETHEUS_URL": prom.url,
            "DAGSTER_HOME": str(instance.root_directory),
        }
        for n in range(runs + 1):
            row = {**billing_run_process(env, START + n * H), "first_run_on_instance": n == 0}
            print(
                f"  small run {n}: {row['wall_seconds']:.2f}s wall, {row['cpu_seconds']:.2f}s CPU, "
                f"exit {row['exit_code']} (load {row['loadavg_before']})",
                flush=True,
            )
            rows.append(row)
            if n:  # the floor of the same hour, right after its run (bench/small_run_floor.py)
                floor = small_run_floor_process(env, START + n * H)
                print(
                    f"    its floor: {floor['wall_seconds']:.2f}s wall (imports {floor.get('imports_seconds')}s, "
                    f"dbt {floor.get('usage_build_seconds')}s + {floor.get('ledger_build_seconds')}s)",
                    flush=True,
                )
                floors.append(floor)
    drop_database()
    later = rows[1:]
    run_median = _median([r["wall_seconds"] for r in later])
    floor_median = _median([f["wall_seconds"] for f in floors])
    return {
        "scale": dataclasses.asdict(SMALL),
        "runs": rows,
        "floors": floors,
        "ok": all(r["exit_code"] == 0 for r in rows) and all(f["exit_code"] == 0 and f.get("ok") for f in floors),
        "first_run_seconds": rows[0]["wall_seconds"],
        "later_runs_seconds": [r["wall_seconds"] for r in later],
        "later_median_seconds": run_median,
        "later_median_cpu_seconds": _median([r["cpu_seconds"] for r in later]),
        "floor_median_seconds": floor_median,
        "floor_median_cpu_seconds": _median([f["cpu_seconds"] for f in floors]),
        "ratio_to_floor": round(run_median / floor_median, 2) if run_median and floor_median else None,
        "aim_seconds": 6,
    }


def small_run_floor_process(env: dict, hour: datetime) -> dict:
    """``bench/small_run_floor.py`` for ``hour`` as a fresh process: the libraries' imports and the
    hour's two dbt builds, nothing of the run's own; timed as a run is (``timed_process``), with
    the parts the script reports."""
    command = [sys.executable, str(ROOT / "bench" / "small_run_floor.py"), "--hour", hour.isoformat()]
    row, done = timed_process(command, env)
    if done.returncode == 0 and done.stdout.strip():
        row.update(json.loads(done.stdout.strip().splitlines()[-1]))
    return {"hour": hour.isoformat(), **row}


def _median(values: list[float]) -> float | None:
    """The median (of an even count, the mean of the middle two; before the sixth session, the
    upper of them)."""
    return round(statistics.median(values), 3) if values else None


DAEMON_HEARTBEAT_WAIT_SECONDS = 180


def _stop_instigators(instance) -> int:
    """Stop every schedule and sensor of the code location on ``instance`` (their state is stored
    on the instance, so the daemon then leaves them alone): the daemon measured here launches
    only the runs the bench queues, not hours of the calendar clock. Returns how many."""
    from billing_pipeline.orchestration.launcher import code_location

    stopped = 0
    with code_location(instance) as (_workspace, location):
        for repository in location.get_repositories().values():
            for schedule in repository.get_schedules():
                instance.stop_schedule(schedule.get_remote_origin_id(), schedule.selector_id, schedule)
                stopped += 1
            for sensor in repository.get_sensors():
                instance.stop_sensor(sensor.get_remote_origin_id(), sensor.selector_id, sensor)
                stopped += 1
    return stopped


def _run_event_times(instance, run_id: str) -> dict[str, float]:
    """The first timestamp of each run-level event of ``run_id`` (RUN_ENQUEUED; RUN_STARTING, which
    the daemon writes when it dequeues the run and asks the code server to launch it; RUN_START,
    written by the run's own process once it has loaded the code; RUN_SUCCESS / RUN_FAILURE)."""
    from dagster._core.events import DagsterEventType

    kinds = {
        DagsterEventType.RUN_ENQUEUED,
        DagsterEventType.RUN_STARTING,
        DagsterEventType.RUN_START,
        DagsterEventType.RUN_SUCCESS,
        DagsterEventType.RUN_FAILURE,
    }
    out: dict[str, float] = {}
    for record in instance.get_records_for_run(run_id, of_type=kinds).records:
        name = record.event_log_entry.dagster_event.event_type.name  # the value is the legacy PIPELINE_*
        out.setdefault(name, record.event_log_entry.timestamp)
    return out


def daemon_run(args) -> dict:
    """One hour as a run the Dagster daemon launches (issue 24): the 3-account platform of
    ``--small-run``, its first hour run once by ``billing run`` in its own process, then every
    schedule and sensor stopped and ``dagster-daemon run -w workspace.yaml`` started on the scratch
    instance. Each of the next ``--daemon-run`` hours is a ``billing run`` that finds the daemon's
    heartbeat and queues its run; the daemon dequeues it (every 5 s, the instance's
    ``dequeue_interval_seconds``) and launches it in a fresh process through the workspace's code
    server, as production's runs start. Per run, from its event log: launch latency (RUN_ENQUEUED
    to RUN_START: the queue's wait, the run process' start-up and its load of the code location)
    and execution (RUN_START to RUN_SUCCESS); of the latency, dequeued (RUN_STARTING) to RUN_START
    is the run process' start-up (imports, code location); and the wall time of the queuing
    ``billing run``."""
    runs = args.daemon_run
    tsdb, _built = prepare_tsdb(SMALL, runs + 1, args.rebuild)
    cluster = cluster_for(SMALL, runs + 1)
    rows = []
    daemon_log = Path(tempfile.mkdtemp(prefix="cycle-bench-daemon-")) / "daemon.log"
    with PrometheusServer(tsdb) as prom, dagster_instance() as instance:
        url = scratch_database(cluster)
        env = {
            **os.environ,
            "BILLING_DATABASE_URL": url,
            "PROMETHEUS_URL": prom.url,
            "DAGSTER_HOME": str(instance.root_directory),
        }
        first = billing_run_process(env, START)
        print(f"  daemon run: first hour without the daemon {first['wall_seconds']:.2f}s", flush=True)
        os.environ.update({k: env[k] for k in ("BILLING_DATABASE_URL", "PROMETHEUS_URL")})
        stopped = _stop_instigators(instance)
        from billing_pipeline.orchestration.launcher import daemon_is_running

        with open(daemon_log, "w") as log:
            daemon = subprocess.Popen(
                [str(Path(sys.executable).with_name("dagster-daemon")), "run", "-w", str(ROOT / "workspace.yaml")],
                env=env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its code server and run workers go with it
            )
        try:
            began = time.monotonic()
            while not daemon_is_running(instance):
                if daemon.poll() is not None or time.monotonic() - began > DAEMON_HEARTBEAT_WAIT_SECONDS:
                    raise RuntimeError(f"dagster-daemon did not start; see {daemon_log}")
                time.sleep(1)
            print(f"  daemon up after {time.monotonic() - began:.1f}s ({stopped} instigators stopped)", flush=True)
            for n in range(1, runs + 1):
                row = billing_run_process(env, START + n * H)
                (record,) = instance.get_run_records(limit=1)
                run = record.dagster_run
                times = _run_event_times(instance, run.run_id)
                end = times.get("RUN_SUCCESS") or times.get("RUN_FAILURE")
                enqueued = times.get("RUN_ENQUEUED")
                row.update(
                    run_id=run.run_id,
                    status=run.status.value,
                    launched_by_daemon="RUN_ENQUEUED" in times and "RUN_STARTING" in times,
                    launch_latency_seconds=round(times["RUN_START"] - enqueued, 2)
                    if enqueued and "RUN_START" in times
                    else None,
                    execution_seconds=round(end - times["RUN_START"], 2) if end and "RUN_START" in times else None,
                    dequeue_to_start_seconds=round(times["RUN_START"] - times["RUN_STARTING"], 2)
                    if "RUN_STARTING" in times and "RUN_START" in times
                    else None,
                )
                print(
                    f"  daemon run {n}: {run.status.value}, launch latency {row['launch_latency_seconds']}s "
                    f"(dequeue to start {row['dequeue_to_start_seconds']}s), execution {row['execution_seconds']}s; "
                    f"`billing run` {row['wall_seconds']:.2f}s wall (load {row['loadavg_before']})",
                    flush=True,
                )
                rows.append(row)
        finally:
            os.killpg(daemon.pid, signal.SIGTERM)
            try:
                daemon.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(daemon.pid, signal.SIGKILL)
                daemon.wait()
    drop_database()
    return {
        "scale": dataclasses.asdict(SMALL),
        "first_run": first,
        "runs": rows,
        "daemon_log": str(daemon_log),
        "ok": first["exit_code"] == 0
        and all(r["exit_code"] == 0 and r["status"] == "SUCCESS" and r["launched_by_daemon"] for r in rows),
        "median_launch_latency_seconds": _median([r["launch_latency_seconds"] or 0 for r in rows]),
        "median_execution_seconds": _median([r["execution_seconds"] or 0 for r in rows]),
        "median_dequeue_to_start_seconds": _median([r["dequeue_to_start_seconds"] or 0 for r in rows]),
    }


# Rollups over the whole history that the hourly builds then keep up to date.
# int_grant_draws_current is a view on int_grant_draws_daily: a full refresh drops it (CASCADE), so
# it is built again with it.
HISTORY_ROLLUPS = ["int_ledger_daily", "int_usage_charges_monthly", "int_grant_draws_daily", "int_grant_draws_current"]


def rebuild_rollups(url: str) -> None:
    """The history was loaded (and its ledger entries backdated) after the warm-up hour's dbt
    build, and a template kept by an older commit may lack a newer rollup: rebuild the rollups
    over the whole history once, untimed, as a deployment running that long would have them, so
    that the measured hour finds them as the hourly builds keep them."""
    from billing_pipeline.transform.project import dbt_environment, invocation_target
    from billing_pipeline.transform.resources import dbt_resource

    with dbt_environment(url), invocation_target(url) as target:
        invocation = (
            dbt_resource()
            .cli(
                ["run", "--select", " ".join(HISTORY_ROLLUPS), "--full-refresh"],
                target_path=target,
                raise_on_error=False,
            )
            .wait()
        )
        if not invocation.is_successful():
            raise RuntimeError(f"rebuilding {', '.join(HISTORY_ROLLUPS)} failed: see {target / 'dbt.log'}")


def hourly(cluster, scale: Scale, prom_url: str, args, days: int | None = None) -> dict:
    """Warm-up hour, optional history of ``days`` days, then the measured hour and its floors."""
    label = "hourly" if days is None else f"growth {days} d"
    template = f"satusky_bench_cycle_h_{scale.key}_{days}d{args.dense_days}"[:63]
    load_before = loadavg()
    loaded = {}
    if days is not None and args.reuse and database_exists(template):
        print(f"  {label}: reusing {template}", flush=True)
        copy_database(template, DB)
        url = server_url(DB)
        upgrade(url)  # a template kept by an older commit gets this commit's migrations
        rebuild_rollups(url)  # ... and this commit's rollups
        with connect(url, autocommit=True) as conn:
            conn.execute("ANALYZE")
        loaded = {"reused": template}
    else:
        t0 = time.monotonic()
        url = scratch_database(cluster)
        print(f"  {label}: scratch database in {time.monotonic() - t0:.1f}s; warm-up hour ...", flush=True)
        warm = run_window(url, START, START + H, args.chunk_hours)
        print(f"  {label}: warm-up {warm['wall_seconds']:.1f}s, problems {warm['problems']}", flush=True)
        if days:
            t0 = time.monotonic()
            with connect(url) as conn:
                rows = history.load_usage_history(conn, START, days, args.dense_days)
                entries = history.load_ledger_history(conn, START, days, args.dense_days)
            rebuild_rollups(url)
            with connect(url, autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE")
            loaded = {
                "rows": rows,
                "ledger_entries": entries,
                "seconds": round(time.monotonic() - t0, 1),
                "dense_days": args.dense_days,
            }
            if args.reuse:
                copy_database(DB, template)
                loaded["kept_as"] = template
    hour = START + H
    posted_after = max_ledger_id(url)
    print(f"  {label}: measured hour {hour:%H:%M} ...", flush=True)
    run = run_window(url, hour, hour + H, args.chunk_hours)
    floor = stage_floors(url, prom_url, hour, posted_after, run)
    print(f"  {label}: floors {json.dumps({k: v.get('seconds') for k, v in floor.items()})}", flush=True)
    with connect(url) as conn:
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    drop_database()
    row = {
        "label": label,
        "history_days": days or 0,
        "history": loaded,
        **run,
        "floors": floor,
        "database_bytes": size,
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
    }
    print(
        f"  {label}: {run['wall_seconds']:.1f}s wall, stages {run['stage_seconds']}, problems {run['problems']}",
        flush=True,
    )
    return row


def month_end(args) -> dict:
    import month_end_bench as meb

    from billing_pipeline.invoicing.months import month_bounds, parse_month
    from billing_pipeline.orchestration.month_end import run_month_end

    n = args.month_end_accounts or args.accounts
    load_before = loadavg()
    t0 = time.monotonic()
    meb.set_up_database(n, args.month, args.reuse)
    setup = time.monotonic() - t0
    url = meb.server(meb.DB)
    os.environ["BILLING_DATABASE_URL"] = url
    _, end = month_bounds(parse_month(args.month))
    with dagster_instance() as instance:
        t0 = time.monotonic()
        first = run_month_end(args.month, end + 6 * H, instance=instance, database_url=url)
        seconds = time.monotonic() - t0
        t0 = time.monotonic()
        run_month_end(args.month, end + 6 * H, instance=instance, database_url=url)
        again_seconds = time.monotonic() - t0
    with psycopg.connect(url) as conn:
        entries, lines = conn.execute(
            "SELECT (SELECT count(*) FROM billing.invoice_entries), (SELECT count(*) FROM billing.invoice_lines)"
        ).fetchone()
    meb.drop()
    if not args.reuse:
        meb.drop(meb.SETUP_DB)
    row = {
        "accounts": n,
        "month": args.month,
        "setup_seconds": round(setup, 1),
        "seconds": round(seconds, 2),
        "again_seconds": round(again_seconds, 2),
        "invoices_issued": first["invoices_issued"],
        "sla_credits_posted": first["sla_credits_posted"],
        "invoice_entries": entries,
        "invoice_lines": lines,
        "aim_seconds": 120,
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
    }
    print(
        f"  month-end: {seconds:.1f}s ({first['invoices_issued']} invoices, {first['sla_credits_posted']} SLA "
        f"credits); again {again_seconds:.1f}s",
        flush=True,
    )
    return row


def catch_up(scale: Scale, args, one_hour: dict | None = None) -> dict:
    """The catch-up section (module docstring). ``one_hour``: the hourly section's measured hour
    of this session, when it ran at the same scale: the ranged run is compared with it."""
    small = scale.scaled_to(min(args.catch_up_deployments, scale.deployments))
    hours = args.catch_up
    load_before = loadavg()
    tsdb, built = prepare_tsdb(small, hours, args.rebuild)
    cluster = cluster_for(small, hours)
    with PrometheusServer(tsdb) as prom:
        os.environ["PROMETHEUS_URL"] = prom.url
        url = scratch_database(cluster)
        before = max_ledger_id(url)
        print(f"  catch-up: {hours} h at {small.deployments} deployments ...", flush=True)
        run = run_window(url, START, START + hours * H, args.chunk_hours)
        run["floors_loadavg_before"] = loadavg()
        run["floors"] = stage_floors(url, prom.url, START, before, run, hours)
        hourly_run = None
        if args.catch_up_hourly:
            # The same hours as runs of one hour each, in the same process: what the catch-up
            # would cost without ranged runs ("24 x one hour").
            load_hourly = loadavg()
            url = scratch_database(cluster)
            print(f"  catch-up: the same {hours} h as {hours} runs of one hour ...", flush=True)
            hourly_run = run_window(url, START, START + hours * H, 1)
            hourly_run["loadavg_before"] = load_hourly
            hourly_run["loadavg_after"] = loadavg()
    drop_database()
    stages = run["stage_seconds"]
    model_seconds = sum(i["model_seconds"] for i in run["dbt_invocations"])
    dbt_stage = stages.get("dbt_usage_models", 0) + stages.get("dbt_ledger_models", 0)
    growing = sum(stages.get(s, 0) for s in GROWING) + model_seconds
    fixed = run["run_overhead_seconds"] + max(0.0, dbt_stage - model_seconds) + run["outside_runs_seconds"]
    factor = scale.deployments / small.deployments
    extrapolated = growing * factor + fixed
    row = {
        "scale": dataclasses.asdict(small),
        "tsdb": {"path": str(tsdb), **built},
        **run,
        "dbt_model_seconds": round(model_seconds, 2),
        "growing_seconds": round(growing, 2),
        "fixed_seconds": round(fixed, 2),
        "extrapolated": {
            "deployments": scale.deployments,
            "factor": round(factor, 2),
            "seconds": round(extrapolated, 1),
            "aim_seconds": 600,
            "note": "EXTRAPOLATED, not measured: growing part x factor + fixed part",
        },
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
    }
    if one_hour is not None and small == scale:
        row["one_hour_seconds"] = one_hour["wall_seconds"]
        row["over_one_hour"] = round(run["wall_seconds"] / one_hour["wall_seconds"], 2)
        print(f"  catch-up: {hours} h took {row['over_one_hour']} x the hourly section's hour", flush=True)
    if hourly_run is not None:
        row["hourly_runs"] = hourly_run
        row["ranged_over_hourly"] = round(run["wall_seconds"] / hourly_run["wall_seconds"], 3)
        print(
            f"  catch-up: ranged {run['wall_seconds']:.1f}s vs {hours} x one hour {hourly_run['wall_seconds']:.1f}s",
            flush=True,
        )
    print(
        f"  catch-up: {run['wall_seconds']:.1f}s measured at {small.deployments} deployments; "
        f"EXTRAPOLATED to {scale.deployments}: {extrapolated:.0f}s",
        flush=True,
    )
    return row


def fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}"


def stage_table(row: dict) -> str:
    """Stage, time, floor, ratio; and the ratio to the floor plus one bare Dagster step, the part
    of a small stage's time that no code of its own could remove."""
    step = row["floors"].get("dagster_step", {}).get("seconds")
    out = [
        "| stage | time (s) | floor (s) | ratio | floor + a bare Dagster step (s) | ratio to that |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for stage in COLUMNS:
        if stage not in row["stage_seconds"]:
            continue
        t = row["stage_seconds"][stage]
        f = row["floors"].get(stage, {}).get("seconds")
        with_step = f + step if f is not None and step is not None else None
        out.append(
            f"| {stage} | {t:.2f} | {fmt(f)} | {fmt(t / f) if f else '—'} | {fmt(with_step)} | "
            f"{fmt(t / with_step) if with_step else '—'} |"
        )
    out.append(f"| run overhead | {row['run_overhead_seconds']:.2f} | — | — | — | — |")
    out.append(f"| outside the run (launch, wait) | {row['outside_runs_seconds']:.2f} | — | — | — | — |")
    floor_sum = sum(f["seconds"] for k, f in row["floors"].items() if k != "dagster_step")
    out.append(
        f"| **whole cycle** | **{row['wall_seconds']:.2f}** | {fmt(floor_sum)} | "
        f"{fmt(row['wall_seconds'] / floor_sum) if floor_sum else '—'} | — | — |"
    )
    return "\n".join(out)


def report_markdown(report: dict) -> str:
    m = report["machine"]
    s = report["scale"]
    out = [
        f"Machine: {m['host']}, {m['cpus']} CPUs, Python {m['python']}; commit {report['git']}; "
        f"{s['deployments']} deployments, {s['deployments'] * s['pods_per_deployment']} pods, "
        f"{s['accounts']} accounts, {s['rentals']} rentals, {s['nodes']} nodes.",
        "",
    ]
    if "hourly" in report:
        h = report["hourly"]
        out += [
            f"### One hourly cycle (steady state; load {h['loadavg_before'][0]} -> {h['loadavg_after'][0]})",
            "",
            stage_table(h),
            "",
        ]
    if "cold_hour" in report:
        c = report["cold_hour"]
        out += [
            f"### The same hour in a fresh `billing run` process (load {c['loadavg_before'][0]} -> "
            f"{c['loadavg_after'][0]})",
            "",
            f"**{c['wall_seconds']:.2f} s** for the whole command (exit {c['exit_code']}); stages "
            + ", ".join(f"{k} {v:.2f}" for k, v in c["stage_seconds"].items())
            + ".",
            "",
        ]
    if "small_run" in report:
        sr = report["small_run"]
        out += [
            "### A small run: one hour, 3 accounts, a fresh `billing run` process (aim < 6 s)",
            "",
            f"First run on the instance {sr['first_run_seconds']:.2f} s; then "
            + ", ".join(f"{r['wall_seconds']:.2f} s (load {r['loadavg_before'][0]})" for r in sr["runs"][1:])
            + f"; median {sr['later_median_seconds']} s.",
            "",
            "CPU time (user + sys) of the same runs: "
            + ", ".join(f"{r.get('cpu_seconds', 0):.2f} s" for r in sr["runs"][1:])
            + f"; median {sr.get('later_median_cpu_seconds')} s.",
            "",
        ]
        if sr.get("floors"):
            parts = ("imports_seconds", "manifest_seconds", "usage_build_seconds", "ledger_build_seconds")
            medians = {p: _median([f[p] for f in sr["floors"] if p in f]) for p in parts}
            out += [
                "Its floor (`bench/small_run_floor.py`: a fresh process that imports Dagster, dagster-postgres, "
                "dagster-dbt and dbt and runs the hour's two dbt builds, nothing else), right after each run: "
                + ", ".join(f"{f['wall_seconds']:.2f} s" for f in sr["floors"])
                + f"; median {sr['floor_median_seconds']} s (CPU {sr['floor_median_cpu_seconds']} s): imports "
                f"{medians['imports_seconds']} s, parse state {medians['manifest_seconds']} s, usage build "
                f"{medians['usage_build_seconds']} s, ledger build {medians['ledger_build_seconds']} s (medians). "
                f"The run is {sr['ratio_to_floor']} x its floor.",
                "",
            ]
    if "daemon_run" in report:
        dr = report["daemon_run"]
        out += [
            "### A run launched by the Dagster daemon: one hour, 3 accounts (queued, dequeued, own process)",
            "",
            "| hour | launch latency (enqueued -> RUN_START) | dequeued (RUN_STARTING) -> RUN_START | execution (RUN_START -> "
            "RUN_SUCCESS) | `billing run` wall | load |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in dr["runs"]:
            out.append(
                f"| {r['hour'][:16]} | {r['launch_latency_seconds']} s | {r['dequeue_to_start_seconds']} s | "
                f"{r['execution_seconds']} s | {r['wall_seconds']:.2f} s | {r['loadavg_before'][0]} |"
            )
        out += [
            "",
            f"Medians: launch latency {dr['median_launch_latency_seconds']} s (of which the queue's dequeue "
            f"interval, up to 5 s), dequeued -> RUN_START {dr['median_dequeue_to_start_seconds']} s, execution "
            f"{dr['median_execution_seconds']} s.",
            "",
        ]
    if "month_end" in report:
        me = report["month_end"]
        out += [
            f"### Month-end (load {me['loadavg_before'][0]} -> {me['loadavg_after'][0]})",
            "",
            f"close-month for {me['accounts']} accounts ({me['month']}): **{me['seconds']:.1f} s** "
            f"(aim < 120 s), {me['invoices_issued']} invoices, {me['sla_credits_posted']} SLA credits, "
            f"{me['invoice_entries']:,} entries on {me['invoice_lines']:,} lines; again {me['again_seconds']:.1f} s; "
            f"set-up {me['setup_seconds']:.0f} s (not timed).",
            "",
        ]
    if "catch_up" in report:
        c = report["catch_up"]
        e = c["extrapolated"]
        out += [
            f"### Catch-up (load {c['loadavg_before'][0]} -> {c['loadavg_after'][0]})",
            "",
            f"Measured: {c['hours']} hours at {c['scale']['deployments']} deployments in {c['runs']} runs: "
            f"**{c['wall_seconds']:.1f} s** ({c['wall_seconds'] / max(c['hours'], 1):.2f} s/hour); stages "
            + ", ".join(f"{k} {v:.1f}" for k, v in c["stage_seconds"].items())
            + f"; dbt models {c['dbt_model_seconds']:.1f} s; run overhead {c['run_overhead_seconds']:.1f} s.",
            "",
            f"Against its floors (the same queries and SQL over the {c['hours']} hours, load "
            f"{c['floors_loadavg_before'][0]}):",
            "",
            stage_table(c),
            "",
        ]
        if "over_one_hour" in c:
            out += [
                f"{c['hours']} hours in one pass: **{c['over_one_hour']:.2f} x** the hourly section's hour "
                f"({c['one_hour_seconds']:.2f} s); {c['hours']} x that hour would be "
                f"{c['hours'] * c['one_hour_seconds']:.1f} s (aim: at most 6 x).",
                "",
            ]
        out += (
            []
            if e["factor"] == 1
            else [
                f"**EXTRAPOLATED (not measured)** to {e['deployments']} deployments: growing part "
                f"{c['growing_seconds']:.1f} s x {e['factor']} + fixed part {c['fixed_seconds']:.1f} s = "
                f"**{e['seconds']:.0f} s** (aim < 600 s).",
                "",
            ]
        )
        if "hourly_runs" in c:
            hr = c["hourly_runs"]
            out += [
                f"The same {c['hours']} hours as {hr['runs']} runs of one hour each (load "
                f"{hr['loadavg_before'][0]} -> {hr['loadavg_after'][0]}): **{hr['wall_seconds']:.1f} s**; stages "
                + ", ".join(f"{k} {v:.1f}" for k, v in hr["stage_seconds"].items())
                + f". Ranged / hourly: **{c['ranged_over_hourly']:.2f}**.",
                "",
            ]
    if report.get("growth"):
        g = report["growth"]
        out += [
            "### Growth: the same hour with history",
            "",
            "| history (days) | whole cycle (s) | " + " | ".join(COLUMNS) + " | run overhead | database | load |",
            "| ---: | ---: |" + " ---: |" * (len(COLUMNS) + 3),
        ]
        for r in g:
            out.append(
                f"| {r['history_days']} | {r['wall_seconds']:.2f} | "
                + " | ".join(f"{r['stage_seconds'].get(s, 0):.2f}" for s in COLUMNS)
                + f" | {r['run_overhead_seconds']:.2f} | {r['database_bytes'] / 2**30:.2f} GiB"
                f" | {r['loadavg_before'][0]} -> {r['loadavg_after'][0]} |"
            )
        ratio = g[-1]["wall_seconds"] / g[0]["wall_seconds"]
        out += [
            "",
            f"{g[-1]['history_days']}-day hour / {g[0]['history_days']}-day hour: **{ratio:.2f}** "
            f"(aim <= 1.20). History beyond {report['dense_days']} days is one hour per day (bench/history.py).",
            "",
        ]
        for r in g:
            out += [f"Stages against floors, {r['history_days']} days of history:", "", stage_table(r), ""]
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deployments", type=int, default=10_000)
    parser.add_argument("--pods-per-deployment", type=int, default=3)
    parser.add_argument("--accounts", type=int, default=2_000)
    parser.add_argument("--rentals", type=int, default=2_000)
    parser.add_argument("--nodes", type=int, default=None, help="default: deployments / 16")
    parser.add_argument("--hourly", action="store_true", help="one steady-state hourly cycle against floors")
    parser.add_argument("--month-end", action="store_true", help="SLA credits and invoices for a month")
    parser.add_argument("--month-end-accounts", type=int, default=None, help="default: --accounts")
    parser.add_argument("--month", default="2026-10")
    parser.add_argument("--catch-up", type=int, nargs="?", const=168, default=None, metavar="HOURS")
    parser.add_argument(
        "--catch-up-deployments",
        type=int,
        default=300,
        help="scale of the measured catch-up (its TSDB's text is ~21 MB per pod and week)",
    )
    parser.add_argument(
        "--growth",
        nargs="?",
        const="1,30,365",
        default=None,
        metavar="DAYS",
        help="history sizes in days, comma-separated",
    )
    parser.add_argument("--dense-days", type=int, default=30, help="history days loaded hourly (older: daily)")
    parser.add_argument("--chunk-hours", type=int, default=24)
    parser.add_argument(
        "--catch-up-hourly", action="store_true", help="also run the catch-up's hours as runs of one hour each"
    )
    parser.add_argument(
        "--no-cold-hour", action="store_true", help="with --hourly: skip the same hour as a fresh `billing run` process"
    )
    parser.add_argument(
        "--small-run",
        type=int,
        nargs="?",
        const=3,
        default=None,
        metavar="RUNS",
        help="fresh `billing run` processes of one hour on a 3-account platform (after a first run)",
    )
    parser.add_argument(
        "--daemon-run",
        type=int,
        nargs="?",
        const=3,
        default=None,
        metavar="RUNS",
        help="runs of one hour launched by dagster-daemon on a 3-account platform (after a first run)",
    )
    parser.add_argument("--reuse", action="store_true", help="keep and reuse loaded databases (growth, month-end)")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cached TSDBs")
    args = parser.parse_args()
    if not (args.hourly or args.month_end or args.catch_up or args.growth or args.small_run or args.daemon_run):
        args.hourly, args.month_end, args.catch_up, args.growth = True, True, 168, "1,30,365"
    growth = [int(d) for d in (args.growth or "").split(",") if d.strip()]
    scale = Scale(
        args.deployments,
        args.pods_per_deployment,
        args.accounts,
        args.rentals,
        args.nodes or max(1, args.deployments // 16),
    )

    # Dagster's compute-log capture stops its `tail -F` children with SIGTERM and waits 30 s for
    # each: a SIGTERM ignored by whatever started this process (nohup-style job control does) is
    # inherited by them and adds 60 s to every run. Restore the default before any run.
    for sig in (signal.SIGTERM, signal.SIGINT):
        if signal.getsignal(sig) == signal.SIG_IGN:
            signal.signal(sig, signal.SIG_DFL if sig == signal.SIGTERM else signal.default_int_handler)
    os.environ["BILLING_FIRST_HOUR"] = START.isoformat()
    os.environ.setdefault("BILLING_LIFECYCLE_DRY_RUN", "1")
    report = {
        "scale": dataclasses.asdict(scale),
        "start": START.isoformat(),
        "chunk_hours": args.chunk_hours,
        "dense_days": args.dense_days,
        "machine": {
            "host": platform.node(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "postgres": os.environ.get("BILLING_BENCH_SERVER", "127.0.0.1:5432"),
        },
        "git": subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "loadavg_at_start": loadavg(),
    }
    print(
        f"{scale}; sections: hourly={args.hourly} month-end={args.month_end} catch-up={args.catch_up} "
        f"growth={growth}; load average {loadavg()}",
        flush=True,
    )
    ok = True
    if args.hourly or growth:
        # Two hours of data: the warm-up hour and the measured one.
        tsdb, built = prepare_tsdb(scale, 2, args.rebuild)
        report["tsdb"] = {"path": str(tsdb), **built}
        cluster = cluster_for(scale, 2)
        with PrometheusServer(tsdb) as prom:
            os.environ["PROMETHEUS_URL"] = prom.url
            if args.hourly:
                report["hourly"] = hourly(cluster, scale, prom.url, args)
                ok &= report["hourly"]["ok"]
                if not args.no_cold_hour:
                    report["cold_hour"] = cold_hour(cluster)
                    ok &= report["cold_hour"]["ok"]
            if growth:
                report["growth"] = [hourly(cluster, scale, prom.url, args, days) for days in growth]
                ok &= all(r["ok"] for r in report["growth"])
    if args.small_run:
        report["small_run"] = small_run(args)
        ok &= report["small_run"]["ok"]
    if args.daemon_run:
        report["daemon_run"] = daemon_run(args)
        ok &= report["daemon_run"]["ok"]
    if args.month_end:
        report["month_end"] = month_end(args)
    if args.catch_up:
        report["catch_up"] = catch_up(scale, args, report.get("hourly"))
        ok &= report["catch_up"]["ok"]
    report["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    text = report_markdown(report)
    print()
    print(text)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"cycle-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps({**report, "markdown": text}, indent=2, default=str))
    print(f"\nwritten to {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
