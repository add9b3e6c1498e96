"""One hour's ingestion for a cluster of 10,000 pods, against a real Prometheus.

Usage: .venv/bin/python bench/ingestion_bench.py [--pods 10000] [--repeat 3] [--rebuild]

The synthetic cluster (``devkit.synthetic.generated_cluster``: 2 replicas per
deployment, 200 accounts, 300 nodes, 1 PVC per 10 pods, 1 GPU pod in 97) is backfilled once into
``bench/.cache/ingestion-<pods>/tsdb`` (gitignored) and reused. Each repetition materialises the
hour's partition of the cycle's ingestion assets (``hourly_billing_job`` limited to the ingestion
stage: metrics and rentals) through Dagster into a scratch
database ``satusky_bench_ingestion`` on BILLING_BENCH_SERVER (default 127.0.0.1:5432), and the
fetch (PromQL) and write (COPY + attribution SQL) phases are also timed on their own.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

# The benchmark hour is in 2025: the partitions must start before it (set before the pipeline loads).
os.environ.setdefault("BILLING_FIRST_HOUR", "2025-01-01T00:00:00Z")

import dagster as dg
import psycopg
from psycopg import sql
from tsdb_cache import cached_tsdb  # bench/, beside this script

from billing_pipeline.core.clock import CLOCK_TAG
from billing_pipeline.db.connection import connect, make_conninfo_url
from billing_pipeline.db.migrate import upgrade
from billing_pipeline.ingestion.metrics import fetch_hour, write_hour
from billing_pipeline.resources.prometheus import PrometheusResource
from devkit.synthetic import PrometheusServer, generated_cluster, write_platform_rows

HOUR = datetime(2025, 6, 2, 10, tzinfo=UTC)
DB = "satusky_bench_ingestion"


def cluster_for(pods: int):
    return generated_cluster(HOUR, 60, pods=pods, pods_per_deployment=2, accounts=200, nodes=300)


def prepare_tsdb(pods: int, rebuild: bool) -> Path:
    tsdb, _built = cached_tsdb(
        f"ingestion-{pods}", lambda: cluster_for(pods), {"pods": pods, "hour": HOUR.isoformat()}, rebuild
    )
    return tsdb


def scratch_database() -> str:
    host = os.environ.get("BILLING_BENCH_SERVER", "127.0.0.1:5432")
    h, _, port = host.partition(":")
    with psycopg.connect(make_conninfo_url(host=h, port=int(port or 5432), dbname="postgres"), autocommit=True) as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB)))
    url = make_conninfo_url(host=h, port=int(port or 5432), dbname=DB)
    upgrade(url)
    return url


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cached TSDB")
    args = parser.parse_args()

    tsdb = prepare_tsdb(args.pods, args.rebuild)
    url = scratch_database()
    cluster = cluster_for(args.pods)
    with connect(url) as conn:
        write_platform_rows(conn, cluster)

    from billing_pipeline.definitions import defs

    with PrometheusServer(tsdb) as prom:
        os.environ["BILLING_DATABASE_URL"] = url
        os.environ["PROMETHEUS_URL"] = prom.url
        from billing_pipeline.orchestration.graph import stage_selection

        job = defs.resolve_job_def("hourly_billing_job")
        ingestion = list(stage_selection(["ingestion"]).resolve(defs.resolve_asset_graph()))
        instance = dg.DagsterInstance.ephemeral()
        resource = PrometheusResource(url=prom.url)
        clock = HOUR.replace(hour=HOUR.hour + 2)
        dagster_runs, fetches, writes = [], [], []
        for _i in range(args.repeat):
            t0 = time.monotonic()
            result = job.execute_in_process(
                partition_key=HOUR.strftime("%Y-%m-%d-%H:%M"),
                instance=instance,
                tags={CLOCK_TAG: clock.isoformat()},
                raise_on_error=False,
                asset_selection=ingestion,
            )
            dagster_runs.append(time.monotonic() - t0)
            if not result.success:
                print("the ingestion run failed", file=sys.stderr)
                return 1
            t0 = time.monotonic()
            fetched = fetch_hour(resource, HOUR, clock)
            fetches.append(time.monotonic() - t0)
            t0 = time.monotonic()
            with connect(url) as conn:
                summary = write_hour(conn, fetched)
            writes.append(time.monotonic() - t0)
        with connect(url) as conn:
            rows = conn.execute("SELECT count(*) FROM billing.metric_container_hours").fetchone()[0]
    report = {
        "pods": args.pods,
        "containers": rows,
        "complete": summary.complete,
        "dagster_run_seconds": [round(s, 2) for s in dagster_runs],
        "dagster_run_median_seconds": round(statistics.median(dagster_runs), 2),
        "fetch_median_seconds": round(statistics.median(fetches), 2),
        "write_median_seconds": round(statistics.median(writes), 2),
    }
    print(json.dumps(report, indent=2))
    with psycopg.connect(make_conninfo_url(host="127.0.0.1", dbname="postgres"), autocommit=True) as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
