"""Benchmark: the incremental dbt run for one new hour, with 1 day and with 30 days of history.

For each history length a fresh migrated database is filled directly with SQL
(``generate_series``, no Prometheus): 10,000 deployments of 2,000 accounts, every hour one
container row (cpu, memory; 1% with a GPU), one network row and, for every fifth deployment, a
volume row per deployment, plus 20 machine rentals covering their renters' nodes (and 5
deployments of other accounts on one of them: reconciliation exceptions). The history is built
once with a full ``dbt build``; then each timed run ingests one new hour and runs what the
Dagster asset runs for that partition: ``dbt build --threads 2 --exclude-resource-type unit_test
--vars '{min_hour, max_hour}'``.

    .venv/bin/python bench/dbt_bench.py                      # 1 and 30 days, 3 timed runs each
    .venv/bin/python bench/dbt_bench.py --days 1 --runs 1    # quick

Aim: the 30-day figure within 20% of the 1-day figure (cost follows new data, not history).
Results are printed and written to bench/results/dbt_bench.json.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from billing_pipeline.db.connection import make_conninfo_url  # noqa: E402
from billing_pipeline.db.migrate import upgrade  # noqa: E402
from tests.support.dbt import build  # noqa: E402

UTC = UTC
T0 = datetime(2025, 4, 1, tzinfo=UTC)
H = timedelta(hours=1)
ACCOUNTS = 2000
RENTERS = 20

PLATFORM = """
INSERT INTO billing.accounts (id, name) SELECT 'acct-' || a, 'Account ' || a FROM generate_series(1, %(accounts)s) a;
INSERT INTO billing.deployments (id, account_id, namespace, name)
SELECT 'dep-' || d, 'acct-' || (1 + (d - 1) %% %(accounts)s), 'ns-' || (1 + (d - 1) %% %(accounts)s), 'dep-' || d
FROM generate_series(1, %(deployments)s) d;
INSERT INTO billing.machine_usages (id, account_id, machine_id, machine_type, node_name, started_at, ended_at)
SELECT 'rent-' || r, 'acct-' || r, 'm-' || r, 'standard-8', 'rented-' || r, %(t0)s, NULL
FROM generate_series(1, %(renters)s) r;
INSERT INTO billing.pricing_configs (id, resource, machine_type, unit, unit_price, basis, effective_from) VALUES
 ('cpu', 'cpu', NULL, 'core_hour', 0.04, 'max_request_usage', '2025-01-01'),
 ('mem', 'memory', NULL, 'gib_hour', 0.005, 'usage', '2025-01-01'),
 ('gpu', 'gpu', NULL, 'gpu_hour', 1.5, 'usage', '2025-01-01'),
 ('sto', 'storage', NULL, 'gib_hour', 0.0002, 'usage', '2025-01-01'),
 ('egr', 'network_egress', NULL, 'gib', 0.08, 'usage', '2025-01-01'),
 ('std8', 'machine', 'standard-8', 'machine_hour', 0.9, 'usage', '2025-01-01');
"""

# Node of deployment d (account a = 1 + (d-1) % accounts): renters' deployments run on their
# rented node (covered), deployments 21..25 on rented-1 (exceptions), the rest on 200 shared nodes.
NODE = """CASE WHEN d <= %(renters)s THEN 'rented-' || d
               WHEN d <= %(renters)s + 5 THEN 'rented-1'
               ELSE 'node-' || (d %% 200) END"""

HOURS = f"""
INSERT INTO billing.metric_container_hours (hour, namespace, pod, container, node, deployment_id, account_id,
    attribution, present_minutes, cpu_usage_core_hours, cpu_request_core_hours, memory_usage_gib_hours,
    memory_request_gib_hours, gpu_request_hours)
SELECT h, 'ns-' || (1 + (d - 1) %% %(accounts)s), 'pod-' || d, 'app', {NODE}, 'dep-' || d,
       'acct-' || (1 + (d - 1) %% %(accounts)s), 'label', 60, 0.25 + (d %% 7) * 0.1, 0.5,
       0.5 + (d %% 5) * 0.25, 1, CASE WHEN d %% 100 = 0 THEN 1 ELSE 0 END
FROM generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '1 hour', interval '1 hour') h
CROSS JOIN generate_series(1, %(deployments)s) d;

INSERT INTO billing.metric_pod_network_hours (hour, namespace, pod, node, deployment_id, account_id, attribution, egress_gib)
SELECT h, 'ns-' || (1 + (d - 1) %% %(accounts)s), 'pod-' || d, {NODE}, 'dep-' || d,
       'acct-' || (1 + (d - 1) %% %(accounts)s), 'label', (d %% 11) * 0.01
FROM generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '1 hour', interval '1 hour') h
CROSS JOIN generate_series(1, %(deployments)s) d;

INSERT INTO billing.metric_volume_hours (hour, namespace, persistentvolumeclaim, deployment_id, account_id,
    attribution, requested_bytes, storage_gib_hours)
SELECT h, 'ns-' || (1 + (d - 1) %% %(accounts)s), 'data-' || d, 'dep-' || d,
       'acct-' || (1 + (d - 1) %% %(accounts)s), 'label', 10 * 1073741824::numeric, 10
FROM generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '1 hour', interval '1 hour') h
CROSS JOIN generate_series(5, %(deployments)s, 5) d;

INSERT INTO billing.machine_rental_hours (hour, machine_usage_id, account_id, machine_id, machine_type, node_name,
    rented_seconds, machine_hours, is_ongoing, source_updated_at)
SELECT h, 'rent-' || r, 'acct-' || r, 'm-' || r, 'standard-8', 'rented-' || r, 3600, 1, true, %(t0)s
FROM generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '1 hour', interval '1 hour') h
CROSS JOIN generate_series(1, %(renters)s) r;

INSERT INTO billing.metric_hours (hour, complete)
SELECT h, true FROM generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '1 hour', interval '1 hour') h;
"""


def execute_script(conn: psycopg.Connection, script: str, params: dict) -> None:
    for statement in script.split(";\n"):
        if statement.strip():
            conn.execute(statement, params)


def server_url(dbname: str, host: str, port: int) -> str:
    return make_conninfo_url(host=host, port=port, dbname=dbname)


def load_hours(url: str, start: datetime, hours: int, deployments: int) -> None:
    params = {
        "start": start,
        "end": start + hours * H,
        "accounts": ACCOUNTS,
        "deployments": deployments,
        "renters": RENTERS,
        "t0": T0,
    }
    with psycopg.connect(url) as conn:
        execute_script(conn, HOURS, params)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE")


def dbt_seconds(output: str) -> float | None:
    """dbt's own figure for running the nodes (after start-up and parsing)."""
    m = re.search(r"in 0 hours (\d+) minutes and ([\d.]+) seconds", output)
    return int(m.group(1)) * 60 + float(m.group(2)) if m else None


def bench_history(days: int, deployments: int, runs: int, host: str, port: int, work: Path, keep: bool) -> dict:
    dbname = f"billing_dbt_bench_{days}d_{uuid.uuid4().hex[:6]}"
    url = server_url(dbname, host, port)
    upgrade(url)
    try:
        with psycopg.connect(url) as conn:
            execute_script(
                conn, PLATFORM, {"accounts": ACCOUNTS, "deployments": deployments, "renters": RENTERS, "t0": T0}
            )
        history = days * 24
        t = time.perf_counter()
        for offset in range(0, history, 24):  # a day per statement keeps memory flat
            load_hours(url, T0 + offset * H, min(24, history - offset), deployments)
        load_s = time.perf_counter() - t
        t = time.perf_counter()
        full = build(url, work / f"{days}d-full", vars={"as_of": (T0 + history * H).isoformat()})
        full_s = time.perf_counter() - t
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ANALYZE")
            priced_rows = conn.execute("SELECT count(*) FROM analytics.fct_priced_usage").fetchone()[0]
        timings, dbt_inner = [], []
        for i in range(runs):
            hour = T0 + (history + i) * H
            load_hours(url, hour, 1, deployments)
            t = time.perf_counter()
            run = build(url, work / f"{days}d-inc", start=hour, hours=1)
            timings.append(time.perf_counter() - t)
            dbt_inner.append(dbt_seconds(run.output))
        with psycopg.connect(url) as conn:
            new_rows = conn.execute(
                "SELECT count(*) FROM analytics.fct_priced_usage WHERE hour = %s", (T0 + history * H,)
            ).fetchone()[0]
        return {
            "days": days,
            "deployments": deployments,
            "history_rows_fct_priced_usage": priced_rows,
            "rows_per_new_hour": new_rows,
            "load_seconds": round(load_s, 1),
            "full_build_seconds": round(full_s, 1),
            "full_build_dbt_seconds": dbt_seconds(full.output),
            "incremental_seconds": [round(x, 2) for x in timings],
            "incremental_median_seconds": round(statistics.median(timings), 2),
            "incremental_dbt_seconds": dbt_inner,
            "incremental_dbt_median_seconds": statistics.median([x for x in dbt_inner if x is not None]),
        }
    finally:
        if not keep:
            with psycopg.connect(server_url("postgres", host, port), autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, nargs="+", default=[1, 30])
    parser.add_argument("--deployments", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5432)
    parser.add_argument("--keep", action="store_true", help="keep the benchmark databases")
    args = parser.parse_args(argv)
    results_dir = ROOT / "bench" / "results"
    work = results_dir / "dbt_work"
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for days in args.days:
        r = bench_history(days, args.deployments, args.runs, args.host, args.port, work, args.keep)
        results.append(r)
        print(json.dumps(r), flush=True)
    print(
        "\n| history | fct_priced_usage rows | rows per new hour | incremental run, one new hour (median wall) | dbt node time (median) |"
    )
    print("| --- | --- | --- | --- | --- |")
    for r in results:
        print(
            f"| {r['days']} day(s) | {r['history_rows_fct_priced_usage']:,} | {r['rows_per_new_hour']:,} | "
            f"{r['incremental_median_seconds']:.1f} s | {r['incremental_dbt_median_seconds']:.1f} s |"
        )
    if len(results) >= 2:
        base, last = results[0], results[-1]
        ratio = last["incremental_median_seconds"] / base["incremental_median_seconds"]
        print(
            f"\n{last['days']}-day / {base['days']}-day incremental wall time: {ratio:.2f} "
            f"({'within' if ratio <= 1.2 else 'NOT within'} the 20% aim)"
        )
    (results_dir / "dbt_bench.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
