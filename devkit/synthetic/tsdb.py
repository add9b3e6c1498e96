"""Backfilling a synthetic cluster into a Prometheus TSDB with ``promtool``."""

from __future__ import annotations

import shutil
import subprocess
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


def build_tsdb(cluster: Cluster, tsdb_dir: str | Path, *, keep_text: bool = False) -> Path:
    """Write the cluster as OpenMetrics next to ``tsdb_dir`` and backfill it into ``tsdb_dir``."""
    tsdb_dir = Path(tsdb_dir)
    tsdb_dir.mkdir(parents=True, exist_ok=True)
    text = tsdb_dir.parent / f"{tsdb_dir.name}.om.txt"
    write_openmetrics(cluster, text)
    try:
        create_blocks(text, tsdb_dir)
    finally:
        if not keep_text:
            text.unlink(missing_ok=True)
    return tsdb_dir


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
