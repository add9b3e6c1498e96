"""README promise "never one query per pod": ingesting an hour sends Prometheus the same fixed
number of PromQL queries whatever the number of pods, and a ranged run of several hours sends the
same number again, not that number per hour (each query is one range query with a one-hour
step). Counted by Prometheus itself (its own ``prometheus_http_requests_total`` per query
endpoint), over two real servers backfilled with a small and a 30x larger synthetic cluster."""

from __future__ import annotations

import re
import urllib.request
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from billing_pipeline.core.clock import CLOCK_TAG
from billing_pipeline.db.connection import connect
from billing_pipeline.ingestion.assets import prometheus_metric_hours
from billing_pipeline.resources.postgres import PostgresResource
from billing_pipeline.resources.prometheus import PrometheusResource
from devkit.synthetic import PrometheusServer, build_tsdb, write_platform_rows
from devkit.synthetic.scenarios import generated_cluster

pytestmark = pytest.mark.prometheus

START = datetime(2025, 4, 1, tzinfo=UTC)
HOUR = START + timedelta(hours=1)
# Three range queries with a one-hour step (containers, pods, volumes) and one per-minute range
# query (scrapes), whatever the number of hours (up to metrics.POINTS_PER_QUERY); no instant query.
QUERIES_PER_HOUR = {"/api/v1/query": 0, "/api/v1/query_range": 4}


def query_requests(prometheus_url: str) -> dict[str, int]:
    """Requests each query endpoint has answered so far, from the server's own counters."""
    text = urllib.request.urlopen(f"{prometheus_url}/metrics", timeout=10).read().decode()
    counts = dict.fromkeys(QUERIES_PER_HOUR, 0)
    for handler, value in re.findall(
        r'^prometheus_http_requests_total\{[^}]*handler="([^"]+)"[^}]*\} (\S+)$', text, re.M
    ):
        if handler in counts:
            counts[handler] += int(float(value))
    return counts


def ingest_counting_queries(db_url: str, pods: int, tmp_path) -> tuple[dict, dict, int]:
    """One hour (an instance that never ingested learns its series count from it), then a ranged
    run of three hours: the queries each sent, and the pods ingested in the last hour."""
    cluster = generated_cluster(START, 300, pods=pods, accounts=5, nodes=10)
    with connect(db_url) as conn:
        write_platform_rows(conn, cluster)
    tsdb = build_tsdb(cluster, tmp_path / f"tsdb-{pods}")
    counts = []
    with PrometheusServer(tsdb) as server:
        for start, end in ((HOUR, HOUR + timedelta(hours=1)), (HOUR + timedelta(hours=1), HOUR + timedelta(hours=4))):
            before = query_requests(server.url)
            result = dg.materialize(
                [prometheus_metric_hours],
                resources={
                    "postgres": PostgresResource(database_url=db_url),
                    "prometheus": PrometheusResource(url=server.url),
                },
                tags={
                    CLOCK_TAG: (START + timedelta(hours=6)).isoformat(),
                    "dagster/asset_partition_range_start": start.strftime("%Y-%m-%d-%H:%M"),
                    "dagster/asset_partition_range_end": (end - timedelta(hours=1)).strftime("%Y-%m-%d-%H:%M"),
                },
                instance=dg.DagsterInstance.ephemeral(),
            )
            assert result.success
            after = query_requests(server.url)
            counts.append({h: after[h] - before[h] for h in QUERIES_PER_HOUR})
    with connect(db_url) as conn:
        ingested_pods = conn.execute(
            "SELECT count(DISTINCT pod) FROM billing.metric_container_hours WHERE hour = %s",
            (HOUR + timedelta(hours=3),),
        ).fetchone()[0]
        hours = conn.execute("SELECT count(*) FROM billing.metric_hours WHERE complete").fetchone()[0]
    assert hours == 4
    return counts[0], counts[1], ingested_pods


def test_an_hour_costs_the_same_queries_for_10_pods_as_for_300(databases, tmp_path):
    small_hour, small_range, small_pods = ingest_counting_queries(databases.new(), 10, tmp_path)
    large_hour, large_range, large_pods = ingest_counting_queries(databases.new(), 300, tmp_path)
    assert (small_pods, large_pods) == (10, 300)  # every pod's usage arrived through those queries
    assert small_hour == large_hour == QUERIES_PER_HOUR
    # Three hours in one ranged run: the same four queries, not twelve.
    assert small_range == large_range == QUERIES_PER_HOUR
