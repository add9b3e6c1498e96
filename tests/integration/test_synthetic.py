"""The synthetic cluster generator: OpenMetrics shape, counter semantics, Prometheus process, platform rows."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from billing_pipeline.db.connection import connect
from devkit.synthetic import (
    GIB,
    Account,
    Cluster,
    Container,
    Deployment,
    Pod,
    PrometheusServer,
    Rental,
    build_tsdb,
    generated_cluster,
    write_openmetrics,
    write_platform_rows,
)
from devkit.synthetic.openmetrics import _counter

T = datetime(2025, 4, 1, tzinfo=UTC)
LINE = re.compile(r"^([a-z_]+)(\{.*\}) (\S+) (\d+)$")


def small_cluster(**kw) -> Cluster:
    return Cluster(
        start=T,
        minutes=10,
        accounts=(Account("a1", "A"),),
        deployments=(Deployment("d1", "a1", "ns", "web"), Deployment("d2", "a1", "ns", "old", labelled=False)),
        pods=(
            Pod(
                "web-1",
                "d1",
                "n1",
                (Container("app", cpu_cores=0.5, memory_bytes=GIB, cpu_request=1),),
                start_minute=2,
                stop_minute=8,
            ),
            Pod("old-1", "d2", "n1", (Container("app", cpu_cores=1.0),)),
        ),
        rentals=(Rental("r1", "a1", "m1", "small", "n1", T, None),),
        **kw,
    )


def parse(path):
    series: dict[str, list[tuple[int, float]]] = {}
    lines = path.read_text().splitlines()
    assert lines[-1] == "# EOF"
    for line in lines[:-1]:
        if line.startswith("#"):
            continue
        m = LINE.match(line)
        assert m, line
        series.setdefault(m[1] + m[2], []).append((int(m[4]), float(m[3])))
    return series


def test_openmetrics_series_sorted_seconds_and_labels(tmp_path):
    series = parse(write_openmetrics(small_cluster(scrape_gaps=((5, 6),)), tmp_path / "om.txt"))
    for key, points in series.items():
        times = [t for t, _ in points]
        assert times == sorted(times) and len(set(times)) == len(times), key
        assert all((t - int(T.timestamp())) % 60 == 0 for t in times)  # seconds, on the minute
        assert int(T.timestamp()) + 5 * 60 not in times  # the scrape gap
    cpu = [
        k
        for k in series
        if k.startswith("container_cpu_usage_seconds_total") and 'pod="web-1"' in k and 'container="app"' in k
    ]
    assert len(cpu) == 1
    assert [v for _, v in series[cpu[0]]] == [0.0, 30.0, 60.0, 120.0, 150.0]  # minutes 2,3,4,6,7
    labels = [k for k in series if k.startswith("kube_pod_labels")]
    assert any('label_satusky_io_deployment_id="d1"' in k for k in labels)
    assert not any('pod="old-1"' in k and "satusky" in k for k in labels)
    assert any(k.startswith("kube_replicaset_owner") and 'owner_name="old"' in k for k in series)
    assert any(k.startswith("container_cpu_usage_seconds_total") and 'container="POD"' in k for k in series)


def test_counter_restart_keeps_every_minute_of_usage():
    points = _counter(list(range(0, 6)), lambda m: 30, restarts=(3,))
    assert points == [(0, 0), (1, 30), (2, 60), (3, 30), (4, 60), (5, 90)]


def test_prometheus_server_serves_backfill_and_stops_by_pid(tmp_path):
    import json
    import urllib.parse
    import urllib.request

    cluster = small_cluster()
    tsdb = build_tsdb(cluster, tmp_path / "tsdb")
    server = PrometheusServer(tsdb)
    with server:
        assert server.url.startswith("http://127.0.0.1:")
        query = urllib.parse.urlencode(
            {"query": 'count_over_time(kube_pod_info{pod="web-1"}[1h])', "time": (T + timedelta(minutes=9)).timestamp()}
        )
        with urllib.request.urlopen(f"{server.url}/api/v1/query?{query}") as resp:
            result = json.load(resp)["data"]["result"]
        assert result[0]["value"][1] == "6"
        pid = server.pid
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_platform_rows_written_once(db_url):
    cluster = small_cluster()
    with connect(db_url) as conn:
        assert write_platform_rows(conn, cluster) == {"accounts": 1, "deployments": 2, "machine_usages": 1}
        assert write_platform_rows(conn, cluster) == {"accounts": 0, "deployments": 0, "machine_usages": 0}
        assert conn.execute("SELECT created_at FROM billing.deployments WHERE id = 'd1'").fetchone()[0] == T


def test_generated_cluster_is_deterministic():
    a = generated_cluster(T, 60, pods=50)
    b = generated_cluster(T, 60, pods=50)
    assert a == b and len(a.pods) == 50
    assert {d.labelled for d in a.deployments} == {True, False}


def test_ensure_tsdb_reuses_the_same_cluster_and_rebuilds_another(tmp_path):
    from devkit.synthetic import ensure_tsdb

    tsdb = ensure_tsdb(small_cluster(), tmp_path / "tsdb")
    blocks = sorted(p.name for p in tsdb.iterdir() if p.is_dir())
    assert blocks and sorted(p.name for p in ensure_tsdb(small_cluster(), tsdb).iterdir() if p.is_dir()) == blocks
    rebuilt = sorted(p.name for p in ensure_tsdb(Cluster(start=T, minutes=20), tsdb).iterdir() if p.is_dir())
    assert rebuilt != blocks
