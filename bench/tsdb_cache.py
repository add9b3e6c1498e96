"""The benchmarks' Prometheus data, backfilled once with promtool and kept under bench/.cache/
(gitignored): building a large cluster's TSDB takes minutes, reading it back a second."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from devkit.synthetic import Cluster, build_tsdb

CACHE = Path(__file__).resolve().parent / ".cache"


def cached_tsdb(name: str, cluster: Callable[[], Cluster], meta: dict, rebuild: bool) -> tuple[Path, dict]:
    """``bench/.cache/<name>/tsdb``, built from ``cluster()`` unless a finished build is there
    (``rebuild`` forces one); returns the folder and the build's record (``meta``, seconds, load)."""
    CACHE.mkdir(exist_ok=True)
    (CACHE / ".gitignore").write_text("*\n")
    base = CACHE / name
    marker = base / "built.json"
    if rebuild or not marker.exists():
        shutil.rmtree(base, ignore_errors=True)
        base.mkdir(parents=True)
        print(f"backfilling {name} with promtool ...", flush=True)
        t0 = time.monotonic()
        build_tsdb(cluster(), base / "tsdb")
        seconds = time.monotonic() - t0
        marker.write_text(json.dumps({**meta, "seconds": round(seconds, 1), "loadavg": os.getloadavg()}))
        print(f"backfilled in {seconds:.1f}s -> {base / 'tsdb'}", flush=True)
    return base / "tsdb", json.loads(marker.read_text())
