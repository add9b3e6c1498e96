"""A real Prometheus over one synthetic cluster covering every ingestion scenario.

``scenario_cluster()`` describes the cluster (26 hours from ``T0`` = 2025-03-01 00:00 UTC);
the session fixture ``scenario_prometheus`` backfills it once per test session (per xdist
worker) and serves it on 127.0.0.1:<free port>; it is stopped by PID at the end.
``copy_tsdb`` gives a test its own server over a copy (for stopping/starting Prometheus without
disturbing other tests). Expected figures follow from the model's documented semantics.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from devkit.synthetic import (
    GIB,
    MIB,
    Account,
    Cluster,
    Container,
    Deployment,
    Pod,
    PrometheusServer,
    Pvc,
    Rental,
    build_tsdb,
)

T0 = datetime(2025, 3, 1, tzinfo=UTC)
HOURS = 26
H = timedelta(hours=1)
M = timedelta(minutes=1)
# The hour in which the per-pod scenarios are asserted: 01:00-02:00 (minutes 60..119).
SCENARIO_HOUR = T0 + H
GAP_HOUR = T0 + 20 * H  # minutes 1210..1213 have no scrape at all
GAP_MINUTES = (1210, 1214)


def scenario_cluster() -> Cluster:
    accounts = (
        Account("acct-alpha", "Alpha Ltd", "alpha@example.com"),
        Account("acct-beta", "Beta GmbH", "beta@example.com"),
    )
    deployments = (
        Deployment("dep-web", "acct-alpha", "ns-alpha", "web"),
        Deployment("dep-gpu", "acct-alpha", "ns-alpha", "trainer"),
        Deployment("dep-legacy", "acct-beta", "ns-beta", "legacy-api", labelled=False),
        # Unknown to the platform: no billing.deployments row.
        Deployment("dep-ghost", "acct-beta", "ns-beta", "ghost", labelled=False, registered=False),
        Deployment("dep-phantom", "acct-beta", "ns-beta", "phantom", labelled=True, registered=False),
    )
    app = dict(memory_bytes=GIB, cpu_request=1.0, memory_request=2 * GIB)
    pods = (
        # steady 0.5 core all the time, 100 MiB/minute egress
        Pod(
            "web-steady",
            "dep-web",
            "node-a",
            (Container("app", cpu_cores=0.5, **app),),
            egress_bytes_per_minute=100 * MIB,
        ),
        # starts at minute 30 of the scenario hour
        Pod("web-late", "dep-web", "node-a", (Container("app", cpu_cores=0.5, **app),), start_minute=90),
        # counter reset (restart) at minute 20 of the scenario hour
        Pod("web-restart", "dep-web", "node-b", (Container("app", cpu_cores=0.5, restart_minutes=(80,), **app),)),
        # stops at minute 45 of the scenario hour
        Pod("web-early-stop", "dep-web", "node-b", (Container("app", cpu_cores=0.5, **app),), stop_minute=105),
        # two containers, one a sidecar with no requests
        Pod(
            "web-sidecar",
            "dep-web",
            "node-b",
            (
                Container("app", cpu_cores=0.25, memory_bytes=512 * MIB),
                Container("proxy", cpu_cores=0.1, memory_bytes=64 * MIB),
            ),
        ),
        Pod(
            "trainer-0",
            "dep-gpu",
            "gpu-node",
            (
                Container(
                    "train", cpu_cores=2.0, memory_bytes=8 * GIB, cpu_request=2.0, memory_request=8 * GIB, gpu_request=1
                ),
            ),
        ),
        Pod(
            "legacy-api-7d9f-abcde",
            "dep-legacy",
            "node-c",
            (Container("api", cpu_cores=0.25, memory_bytes=GIB),),
            replicaset="legacy-api-7d9f",
        ),
        Pod("ghost-1", "dep-ghost", "node-c", (Container("main", cpu_cores=0.2, memory_bytes=GIB),)),
        Pod("phantom-1", "dep-phantom", "node-c", (Container("main", cpu_cores=0.1, memory_bytes=GIB),)),
    )
    pvcs = (
        Pvc("ns-alpha", "data-web", 10 * GIB, deployment_id="dep-web"),
        Pvc("ns-beta", "scratch", 5 * GIB),  # unlabelled
    )
    rentals = (
        Rental(
            "rent-mid",
            "acct-alpha",
            "m-1",
            "cpu-medium",
            "node-a",
            T0 + H + 15 * M + timedelta(seconds=30),
            T0 + H + 40 * M,
        ),
        Rental("rent-ongoing", "acct-beta", "m-2", "gpu-large", "gpu-node", T0 - 2 * H, None),
        Rental("rent-multi", "acct-alpha", "m-3", "cpu-medium", "node-b", T0 + 30 * M, T0 + 3 * H + 10 * M),
        Rental("rent-bad-dates", "acct-alpha", "m-4", "cpu-medium", "node-a", T0 + 2 * H, T0 + H),
        Rental("rent-bad-account", "acct-nobody", "m-5", "cpu-medium", "node-a", T0, T0 + H),
        Rental("rent-null-node", "acct-alpha", "m-6", "cpu-medium", None, T0, T0 + H),
    )
    return Cluster(
        start=T0,
        minutes=HOURS * 60,
        accounts=accounts,
        deployments=deployments,
        pods=pods,
        pvcs=pvcs,
        rentals=rentals,
        scrape_gaps=(GAP_MINUTES,),
    )


@dataclass
class ScenarioPrometheus:
    cluster: Cluster
    server: PrometheusServer
    tsdb: Path

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture(scope="session")
def scenario_prometheus(tmp_path_factory) -> ScenarioPrometheus:
    cluster = scenario_cluster()
    base = tmp_path_factory.mktemp("prometheus")
    tsdb = build_tsdb(cluster, base / "tsdb")
    server = PrometheusServer(tsdb).start()
    try:
        yield ScenarioPrometheus(cluster, server, tsdb)
    finally:
        server.stop()


def copy_tsdb(source: Path, target: Path) -> Path:
    """A copy of a TSDB's blocks (not its lock or WAL) for a server of one's own."""
    target.mkdir(parents=True)
    for block in source.iterdir():
        if block.is_dir() and block.name not in ("wal", "chunks_head"):
            shutil.copytree(block, target / block.name)
    return target
