"""A synthetic Kubernetes cluster, served by a real Prometheus: for tests, the demo, benchmarks.

The API, in the order one uses it::

    from devkit.synthetic import (
        Cluster, Account, Deployment, Pod, Container, Pvc, Rental, GIB, MIB,   # the description
        write_openmetrics,      # Cluster -> OpenMetrics text (cAdvisor + kube-state-metrics)
        create_blocks,          # promtool tsdb create-blocks-from openmetrics --max-block-duration=24h
        build_tsdb,             # both of the above: Cluster -> TSDB directory
        ensure_tsdb,            # build_tsdb unless the directory already holds this cluster
        PrometheusServer,       # prometheus on 127.0.0.1:<free port> over a TSDB; stop() by PID
        write_platform_rows,    # accounts, deployments, machine_usages -> billing database
        generated_cluster,      # a deterministic many-pod cluster (benchmarks, demo)
    )

    cluster = Cluster(start=datetime(2025, 3, 1, tzinfo=UTC), minutes=180, accounts=..., ...)
    build_tsdb(cluster, tmp / "tsdb")
    with PrometheusServer(tmp / "tsdb") as prom, connect(db_url) as conn:
        write_platform_rows(conn, cluster)
        os.environ["PROMETHEUS_URL"] = prom.url
        ...

Semantics of the description (what each figure should come out as) are in ``model``; the
series and labels written are listed in ``openmetrics``. ``prometheus`` and ``promtool`` must be
on PATH (Debian package ``prometheus``).
"""

from devkit.synthetic.model import (
    GIB,
    MIB,
    Account,
    Cluster,
    Container,
    Deployment,
    Pod,
    Pvc,
    Rental,
    replicaset_name,
)
from devkit.synthetic.openmetrics import write_openmetrics
from devkit.synthetic.platform_rows import write_platform_rows
from devkit.synthetic.scenarios import generated_cluster
from devkit.synthetic.server import PrometheusServer, free_port
from devkit.synthetic.tsdb import build_tsdb, create_blocks, ensure_tsdb, find_binary

__all__ = [
    "GIB",
    "MIB",
    "Account",
    "Cluster",
    "Container",
    "Deployment",
    "Pod",
    "PrometheusServer",
    "Pvc",
    "Rental",
    "build_tsdb",
    "create_blocks",
    "ensure_tsdb",
    "find_binary",
    "free_port",
    "generated_cluster",
    "replicaset_name",
    "write_openmetrics",
    "write_platform_rows",
]
