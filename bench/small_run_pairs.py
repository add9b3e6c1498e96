"""One small ``billing run`` as a fresh process, before and after: this checkout against a git
revision, measured as interleaved pairs (issue 24's small run).

Usage: .venv/bin/python bench/small_run_pairs.py [--before e507185] [--pairs 10]

Why pairs: on a shared machine the same code's median moves by 20 % between two rounds a few
minutes apart (the fourth session saw 7.97 s and 9.91 s), so two rounds, one per side, compare
the machine's moods. Here one run of each side alternates, each side on its own platform, and
the comparison is pair by pair.

Each side is a checkout with its own environment: this one as it is, ``--before`` in a temporary
``git worktree`` with ``uv sync --frozen --compile-bytecode`` (as scripts/setup installs). Each
side keeps its own 3-account platform alive for the whole measurement, built by that side's own
``bench/cycle_bench.py`` (its migrations, its Prometheus data, a Dagster instance in PostgreSQL),
in a child process under that side's Python (``KEEPER``). Each side runs its first hour once
(the instance's first run: dbt parses the project for the new database), then the pairs: hour n
of each side as a fresh ``billing run --start .. --end .. --now ..`` process, timed whole (wall
clock, and CPU time: user + sys of the process and its children). Prints each pair, the medians
and how many pairs ``after`` was faster in; writes ``bench/results/small-run-pairs-<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from cycle_bench import RESULTS, ROOT, H, billing_run_process  # bench/, beside this script

LEDGER_KEY = "bench-scratch-ledger-key-not-a-secret-0123456789"

# Run under a side's Python: builds that side's platform with its own bench code, prints its
# environment as one JSON line, and keeps it until stdin closes; then its databases are dropped.
KEEPER = r"""
import json, os, sys
bench, hours = sys.argv[1], int(sys.argv[2])
sys.path.insert(0, bench)
sys.argv = ["cycle_bench"]
os.environ.setdefault("BILLING_LEDGER_KEY", os.environ["SMALL_RUN_LEDGER_KEY"])
import cycle_bench as cb
scale = cb.Scale(3, 1, 3, 3, 1)  # a 3-account platform: one deployment (one pod) and one rental each
tsdb, _ = cb.prepare_tsdb(scale, hours, False)
cluster = cb.cluster_for(scale, hours)
with cb.PrometheusServer(tsdb) as prom, cb.dagster_instance() as instance:
    url = cb.scratch_database(cluster)
    try:
        print(json.dumps({
            "BILLING_DATABASE_URL": url, "PROMETHEUS_URL": prom.url,
            "DAGSTER_HOME": str(instance.root_directory), "BILLING_FIRST_HOUR": cb.START.isoformat(),
            "BILLING_LIFECYCLE_DRY_RUN": "1", "BILLING_LEDGER_KEY": os.environ["BILLING_LEDGER_KEY"],
            "start": cb.START.isoformat(),
        }), flush=True)
        sys.stdin.read()
    finally:
        cb.drop_database()
"""


def git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def prepare_before(rev: str, into: Path) -> Path:
    """A worktree of ``rev`` with its own environment, compiled as scripts/setup compiles."""
    checkout = into / "before"
    git("worktree", "add", "--detach", "--quiet", str(checkout), rev)
    subprocess.run(["uv", "sync", "--frozen", "--quiet", "--compile-bytecode"], cwd=checkout, check=True)
    subprocess.run(
        [str(checkout / ".venv/bin/python"), "-m", "compileall", "-q", "-j", "0", "billing_pipeline", "devkit"],
        cwd=checkout,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return checkout


class Side:
    """One checkout's platform, kept alive by its keeper process."""

    def __init__(self, name: str, checkout: Path, hours: int):
        self.name, self.checkout = name, checkout
        self.keeper = subprocess.Popen(
            [str(checkout / ".venv/bin/python"), "-c", KEEPER, str(checkout / "bench"), str(hours)],
            cwd=checkout,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "SMALL_RUN_LEDGER_KEY": LEDGER_KEY},
        )
        line = ""
        while not line.startswith("{"):
            line = self.keeper.stdout.readline()
            if not line:
                raise SystemExit(f"{name}: the platform keeper in {checkout} exited before it was ready")
        self.env = json.loads(line)
        self.start = datetime.fromisoformat(self.env.pop("start"))

    def run_hour(self, n: int) -> dict:
        hour = self.start + n * H
        done = billing_run_process({**os.environ, **self.env}, hour, checkout=self.checkout)
        if done["exit_code"]:
            raise SystemExit(f"{self.name}: billing run of {hour} exited {done['exit_code']}:\n{done['stderr']}")
        return {
            "hour": done["hour"],
            "wall": done["wall_seconds"],
            "cpu": done["cpu_seconds"],
            "load": round(done["loadavg_before"][0], 2),
        }

    def close(self) -> None:
        self.keeper.stdin.close()
        self.keeper.wait(timeout=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="e507185", help="the git revision measured as 'before'")
    parser.add_argument("--pairs", type=int, default=10)
    args = parser.parse_args()
    after_rev = git("rev-parse", "--short", "HEAD")
    scratch = Path(tempfile.mkdtemp(prefix="small-run-pairs-"))
    sides: list[Side] = []
    try:
        print(f"preparing {args.before} in {scratch} ...", flush=True)
        before_checkout = prepare_before(args.before, scratch)
        hours = args.pairs + 2
        sides = [Side(args.before, before_checkout, hours), Side(after_rev, ROOT, hours)]
        for side in sides:
            first = side.run_hour(0)
            print(f"{side.name}: first run on the instance {first['wall']:.2f} s (not counted)", flush=True)
        pairs = []
        for n in range(1, args.pairs + 1):
            before, after = (side.run_hour(n) for side in sides)
            pairs.append({"before": before, "after": after})
            print(
                f"pair {n}: before {before['wall']:.2f} s (CPU {before['cpu']:.2f}), "
                f"after {after['wall']:.2f} s (CPU {after['cpu']:.2f}), load {before['load']}",
                flush=True,
            )
    finally:
        for side in sides:
            side.close()
        if (scratch / "before").exists():
            git("worktree", "remove", "--force", str(scratch / "before"))
        shutil.rmtree(scratch, ignore_errors=True)

    def median(side: str, what: str) -> float:
        return round(statistics.median(p[side][what] for p in pairs), 2)

    loads = [p[side]["load"] for p in pairs for side in ("before", "after")]
    summary = {
        "before": args.before,
        "after": after_rev,
        "pairs": pairs,
        "median_wall": {"before": median("before", "wall"), "after": median("after", "wall")},
        "median_cpu": {"before": median("before", "cpu"), "after": median("after", "cpu")},
        "after_faster_in": sum(p["after"]["wall"] < p["before"]["wall"] for p in pairs),
        "loadavg_range": [min(loads), max(loads)],
        "cpus": os.cpu_count(),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    print(
        f"\nmedian wall {summary['median_wall']['before']} s -> {summary['median_wall']['after']} s, "
        f"CPU {summary['median_cpu']['before']} s -> {summary['median_cpu']['after']} s; "
        f"after faster in {summary['after_faster_in']} of {len(pairs)} pairs"
    )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"small-run-pairs-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(summary, indent=2))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
