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


# OpenMetrics text per pod and minute (measured: 7.5 GB for 30,000 pods x 2 h), and the most
# text one slice of a build may put on the disk at once (BILLING_BENCH_TEXT_GB, default 6).
TEXT_BYTES_PER_POD_MINUTE = 2100
TEXT_BUDGET = float(os.environ.get("BILLING_BENCH_TEXT_GB", "6")) * 1e9


def parts_for(cluster: Cluster) -> int:
    """How many slices ``build_tsdb`` writes so no slice's text exceeds the budget."""
    text = len(cluster.pods) * cluster.minutes * TEXT_BYTES_PER_POD_MINUTE
    return max(1, -(-int(text) // int(TEXT_BUDGET)))


def cached_tsdb(name: str, cluster: Callable[[], Cluster], meta: dict, rebuild: bool) -> tuple[Path, dict]:
    """``bench/.cache/<name>/tsdb``, built from ``cluster()`` unless a finished build is there
    (``rebuild`` forces one); returns the folder and the build's record (``meta``, seconds, load,
    the slices it was built in)."""
    CACHE.mkdir(exist_ok=True)
    (CACHE / ".gitignore").write_text("*\n")
    base = CACHE / name
    marker = base / "built.json"
    if rebuild or not marker.exists():
        shutil.rmtree(base, ignore_errors=True)
        base.mkdir(parents=True)
        print(f"backfilling {name} with promtool ...", flush=True)
        t0 = time.monotonic()
        whole = cluster()
        parts = parts_for(whole)
        if parts > 1:
            print(f"  in {parts} slices of about {TEXT_BUDGET / 1e9:.0f} GB of text each", flush=True)
        build_tsdb(whole, base / "tsdb", parts=parts)
        seconds = time.monotonic() - t0
        marker.write_text(
            json.dumps({**meta, "seconds": round(seconds, 1), "loadavg": os.getloadavg(), "parts": parts})
        )
        print(f"backfilled in {seconds:.1f}s -> {base / 'tsdb'}", flush=True)
    return base / "tsdb", json.loads(marker.read_text())
