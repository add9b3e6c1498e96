"""A Dagster instance whose runs and events live in PostgreSQL (dagster-postgres)."""

from __future__ import annotations

import os
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict

from billing_pipeline.db.connection import ensure_database, make_conninfo_url, state_dir
from billing_pipeline.runs import LANE_TAG, MONEY_LANE

def dagster_database_url(billing_url: str) -> str:
    """The Dagster storage database: ``<billing database>_dagster`` on the same server."""
    p = conninfo_to_dict(billing_url)
    host = p.get("host", "127.0.0.1")
    port = int(p["port"]) if p.get("port") else None
    dbname = f"{p.get('dbname', 'satusky_billing')}_dagster"
    return make_conninfo_url(host=host, port=port, dbname=dbname, user=p.get("user", "postgres"))


def prepare_dagster_home(billing_url: str, home: Path | None = None) -> Path:
    """Write ``dagster.yaml`` (Postgres run, event-log and schedule storage) and set DAGSTER_HOME."""
    url = dagster_database_url(billing_url)
    ensure_database(url)
    home = home or state_dir() / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    sqlalchemy_url = url.replace("postgresql://", "postgresql+psycopg2://", 1)
    (home / "dagster.yaml").write_text(
        "# Written by the demo: Dagster keeps runs, events and schedules in PostgreSQL.\n"
        "storage:\n"
        "  postgres:\n"
        f"    postgres_url: \"{sqlalchemy_url}\"\n"
        "# One run of the money lane at a time (billing_pipeline/runs.py): a run a sensor or schedule\n"
        "# starts and a run `billing run` submits wait for each other in the queue.\n"
        "run_queue:\n"
        "  max_concurrent_runs: 4\n"
        "  tag_concurrency_limits:\n"
        f"    - key: \"{LANE_TAG}\"\n"
        f"      value: \"{MONEY_LANE}\"\n"
        "      limit: 1\n"
        "telemetry:\n"
        "  enabled: false\n"
    )
    os.environ["DAGSTER_HOME"] = str(home)
    return home
