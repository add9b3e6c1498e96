"""Backfilling a synthetic cluster into a Prometheus TSDB with ``promtool``."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import time
from pathlib import Path

from billing_pipeline.core.errors import ConfigurationError
from devkit.synthetic.model import Cluster
from devkit.synthetic.openmetrics import write_openmetrics


def find_binary(name: str) -> str:
    """The path of ``prometheus`` / ``promtool`` on PATH, or an error saying how to install it."""
    path = shutil.which(name)
    if not path:
        raise ConfigurationError(
            f"`{name}` is not on PATH. Install Prometheus 2.x "
            "(Debian: `apt-get install -y --no-install-recommends prometheus`)."
        )
    return path


def create_blocks(openmetrics_path: str | Path, tsdb_dir: str | Path) -> Path:
    """``promtool tsdb create-blocks-from openmetrics --max-block-duration=24h FILE DIR``."""
    tsdb_dir = Path(tsdb_dir)
    tsdb_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [
            find_binary("promtool"),
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            "--max-block-duration=24h",
            str(openmetrics_path),
            str(tsdb_dir),
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise ConfigurationError(
            f"promtool could not backfill {openmetrics_path} into {tsdb_dir}: "
            f"{(proc.stderr or proc.stdout).strip()[-2000:]}"
        )
    return tsdb_dir


def build_tsdb(
    cluster: Cluster, tsdb_dir: str | Path, *, keep_text: bool = False, parts: int = 1, settle: bool = True
) -> Path:
    """Write the cluster as OpenMetrics next to ``tsdb_dir`` and backfill it into ``tsdb_dir``.

    With ``parts`` > 1 the cluster is written and backfilled a slice of deployments at a time
    (``cluster_part``), so the text on disk is never more than one slice: a fleet whose text is
    larger than the disk (about 2 KB per pod and minute) still fits. The slices' blocks overlap
    in time, so Prometheus merges them once (``settle_tsdb``) into the layout one text would
    have given, before anyone queries (``settle=False`` leaves that to the server that serves it:
    queries read overlapping blocks correctly, only more slowly).
    """
    tsdb_dir = Path(tsdb_dir)
    tsdb_dir.mkdir(parents=True, exist_ok=True)
    text = tsdb_dir.parent / f"{tsdb_dir.name}.om.txt"
    for part in range(parts):
        write_openmetrics(cluster_part(cluster, part, parts) if parts > 1 else cluster, text)
        try:
            create_blocks(text, tsdb_dir)
        finally:
            if not keep_text or parts > 1:
                text.unlink(missing_ok=True)
    if parts > 1 and settle:
        settle_tsdb(tsdb_dir)
    return tsdb_dir


def cluster_part(cluster: Cluster, part: int, parts: int) -> Cluster:
    """Deployments ``part``, ``part + parts``, ... with their pods and PVCs; the rented machines
    and the PVCs of no known deployment go with part 0. A node's info series is written by every part
    that has a pod on it, with the same samples, which the merge keeps once."""
    deployments = tuple(d for i, d in enumerate(cluster.deployments) if i % parts == part)
    ids = {d.id for d in deployments}
    known = {d.id for d in cluster.deployments}
    return dataclasses.replace(
        cluster,
        deployments=deployments,
        pods=tuple(p for p in cluster.pods if p.deployment_id in ids),
        pvcs=tuple(v for v in cluster.pvcs if (v.deployment_id in ids) or (part == 0 and v.deployment_id not in known)),
        rentals=cluster.rentals if part == 0 else (),
    )


def settle_tsdb(tsdb_dir: str | Path, *, quiet_seconds: float = 90.0, timeout: float = 3600.0) -> list[str]:
    """Run Prometheus over ``tsdb_dir`` until its compactor has merged overlapping blocks and
    stops changing the set of blocks for ``quiet_seconds`` (it plans every minute); return the
    blocks. A benchmark started afterwards finds nothing left to compact."""
    from devkit.synthetic.server import PrometheusServer

    tsdb_dir = Path(tsdb_dir)

    def blocks() -> list[str]:
        return sorted(p.name for p in tsdb_dir.iterdir() if (p / "meta.json").exists())

    with PrometheusServer(tsdb_dir, log_path=tsdb_dir.parent / "settle.prometheus.log"):
        deadline = time.monotonic() + timeout
        seen, since = blocks(), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(10)
            now = blocks()
            busy = any(p.name.endswith((".tmp-for-creation", ".tmp-for-deletion")) for p in tsdb_dir.iterdir())
            if now != seen or busy:
                seen, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet_seconds:
                return now
    raise ConfigurationError(f"Prometheus was still compacting {tsdb_dir} after {timeout:.0f}s")


def ensure_tsdb(cluster: Cluster, tsdb_dir: str | Path) -> Path:
    """``build_tsdb`` unless ``tsdb_dir`` already holds this very cluster (demo and benchmarks).

    The cluster's description is fingerprinted (its ``repr``) into ``<tsdb_dir>/.cluster``;
    a different description rebuilds the directory from scratch.
    """
    import hashlib

    tsdb_dir = Path(tsdb_dir)
    fingerprint = hashlib.sha256(repr(cluster).encode()).hexdigest()
    marker = tsdb_dir / ".cluster"
    if marker.exists() and marker.read_text() == fingerprint:
        return tsdb_dir
    shutil.rmtree(tsdb_dir, ignore_errors=True)
    build_tsdb(cluster, tsdb_dir)
    marker.write_text(fingerprint)
    return tsdb_dir
