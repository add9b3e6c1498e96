"""README promise "never one query per pod": ingesting an hour sends Prometheus the same fixed
number of PromQL queries whatever the number of pods. Counted by Prometheus itself (its own
``prometheus_http_requests_total`` per query endpoint), over two real servers backfilled with a
small and a 30x larger synthetic cluster."""

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
# Three instant queries (containers, pods, volumes) and one per-minute range query (scrapes).
QUERIES_PER_HOUR = {"/api/v1/query": 3, "/api/v1/query_range": 1}


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


def ingest_hour_counting_queries(db_url: str, pods: int, tmp_path) -> tuple[dict[str, int], int]:
    cluster = generated_cluster(START, 180, pods=pods, accounts=5, nodes=10)
    with connect(db_url) as conn:
        write_platform_rows(conn, cluster)
    tsdb = build_tsdb(cluster, tmp_path / f"tsdb-{pods}")
    with PrometheusServer(tsdb) as server:
        before = query_requests(server.url)
        result = dg.materialize(
            [prometheus_metric_hours],
            partition_key=HOUR.strftime("%Y-%m-%d-%H:%M"),
            resources={
                "postgres": PostgresResource(database_url=db_url),
                "prometheus": PrometheusResource(url=server.url),
            },
            tags={CLOCK_TAG: (START + timedelta(hours=3)).isoformat()},
            instance=dg.DagsterInstance.ephemeral(),
        )
        assert result.success
        after = query_requests(server.url)
    with connect(db_url) as conn:
        ingested_pods = conn.execute(
            "SELECT count(DISTINCT pod) FROM billing.metric_container_hours WHERE hour = %s", (HOUR,)
        ).fetchone()[0]
    return {h: after[h] - before[h] for h in QUERIES_PER_HOUR}, ingested_pods


def test_an_hour_costs_the_same_queries_for_10_pods_as_for_300(databases, tmp_path):
    small, small_pods = ingest_hour_counting_queries(databases.new(), 10, tmp_path)
    large, large_pods = ingest_hour_counting_queries(databases.new(), 300, tmp_path)
    assert (small_pods, large_pods) == (10, 300)  # every pod's usage arrived through those queries
    assert small == large == QUERIES_PER_HOUR
