"""Fixtures of the whole-product tier shared by several test files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pgserver
import pytest

REPO = Path(__file__).resolve().parents[2]


def demo_environment(state: Path) -> dict[str, str]:
    """The environment a newcomer runs the demo in: none of the session's BILLING_* settings
    (the test ledger key, the tests' first hour), no DAGSTER_HOME, no server on 5432."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BILLING_") and k != "DAGSTER_HOME"}
    env.update(BILLING_LOCAL_PG="127.0.0.1:1", BILLING_STATE_DIR=str(state))
    return env


@dataclass
class DemoRuns:
    state: Path  # the demo's state folder (its .billing)
    outputs: list[str]  # stdout of each run, in order


@pytest.fixture(scope="session")
def demo_runs():
    """The demo run twice on embedded PostgreSQL (the second finds everything in place), once per
    session: tests/e2e/test_demo.py checks what it prints, test_demo_next_steps.py what it leaves."""
    # Directly under /tmp: as root, pgserver runs PostgreSQL as its own system user, which must be
    # able to traverse every parent folder (pytest's own tmp folders are private to root), and the
    # Unix socket path must stay short (at most ~107 bytes).
    state = Path(tempfile.mkdtemp(prefix="billing-demo-", dir="/tmp"))
    state.chmod(0o755)
    outputs = []
    try:
        for _ in (1, 2):
            result = subprocess.run(
                [sys.executable, "-m", "devkit.demo"],
                cwd=REPO,
                env=demo_environment(state),
                capture_output=True,
                text=True,
                timeout=1200,
            )
            assert result.returncode == 0, result.stdout + result.stderr
            outputs.append(result.stdout)
        yield DemoRuns(state, outputs)
    finally:
        data = state / "pgdata"
        if data.exists():
            pgserver.get_server(data, cleanup_mode="stop").cleanup()
        shutil.rmtree(state, ignore_errors=True)
