"""The Dagster code location loads through workspace.yaml and keeps its runs in PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import psycopg

from billing_pipeline.db.dagster_instance import dagster_database_url, prepare_dagster_home
from devkit.synthetic import free_port

REPO = Path(__file__).resolve().parents[2]


def test_workspace_loads_the_one_definitions_object():
    result = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
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


def test_dagster_dev_starts_and_lists_the_pipeline(db_url, tmp_path):
    """`dagster dev -w workspace.yaml` serves the web UI, which lists the jobs, sensors and assets."""
    home = prepare_dagster_home(db_url, tmp_path / "dagster_home")
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "BILLING_DATABASE_URL": db_url}
    log = open(tmp_path / "dagster-dev.log", "w")
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster"),
            "dev",
            "-w",
            "workspace.yaml",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        query = """{ repositoriesOrError { ... on RepositoryConnection { nodes {
            jobs { name } sensors { name } schedules { name } assetNodes { assetKey { path } } } } } }"""
        repository = None
        deadline = time.monotonic() + 240
        while repository is None and time.monotonic() < deadline:
            assert server.poll() is None, (tmp_path / "dagster-dev.log").read_text()
            try:
                body = json.dumps({"query": query}).encode()
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/graphql", body, {"Content-Type": "application/json"}
                )
                nodes = json.load(urllib.request.urlopen(request, timeout=10))["data"]["repositoriesOrError"]["nodes"]
                repository = nodes[0] if nodes else None
            except (OSError, KeyError, TypeError, ValueError):
                time.sleep(1)
        assert repository is not None, "dagster dev did not serve the code location in time"
        jobs = {j["name"] for j in repository["jobs"]}
        assert {
            "hourly_billing_job",
            "account_actions_job",
            "credit_usage_job",
            "balance_alert_job",
            "auto_topup_job",
            "grace_period_job",
        } <= jobs
        assert {"corrections_sensor", "rental_corrections_sensor", "balance_change_sensor"} <= {
            s["name"] for s in repository["sensors"]
        }
        assets = {"/".join(a["assetKey"]["path"]) for a in repository["assetNodes"]}
        assert {
            "ingestion/metric_container_hours",
            "analytics/fct_priced_usage",
            "ledger/credit_transactions",
            "platform/machine_usages",
        } <= assets
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the whole group: webserver and code server
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
        log.close()
