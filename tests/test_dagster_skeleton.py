"""The Dagster code location loads through workspace.yaml and keeps its runs in PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import psycopg

from billing_pipeline.db.dagster_instance import dagster_database_url, prepare_dagster_home

REPO = Path(__file__).resolve().parent.parent


def test_workspace_loads_the_one_definitions_object():
    result = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO, capture_output=True, text=True, timeout=180,
        env={**os.environ, "BILLING_DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/unused"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Validation successful" in result.stdout + result.stderr


def test_runs_and_events_are_stored_in_postgres(db_url, tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))  # restored after the test
    home = prepare_dagster_home(db_url, tmp_path / "dagster_home")

    @dg.asset
    def probe() -> int:
        return 1

    with dg.DagsterInstance.from_config(str(home)) as instance:
        result = dg.materialize([probe], instance=instance)
        assert result.success
    with psycopg.connect(dagster_database_url(db_url)) as conn:
        stored = conn.execute("SELECT status FROM runs WHERE run_id = %s", (result.run_id,)).fetchone()
        events = conn.execute("SELECT count(*) FROM event_logs WHERE run_id = %s", (result.run_id,)).fetchone()[0]
    assert stored == ("SUCCESS",) and events > 0
