"""A Dagster instance whose runs and events live in PostgreSQL (dagster-postgres)."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote, urlencode

from psycopg.conninfo import conninfo_to_dict

from billing_pipeline.core.runs import LANE_TAG, MONEY_LANE
from billing_pipeline.db.connection import LOCAL_PORT, ensure_database, state_dir

# When the server needs a password, dagster.yaml names this variable instead of holding the secret.
DAGSTER_URL_ENV = "BILLING_DAGSTER_DATABASE_URL"


def dagster_database_url(billing_url: str) -> str:
    """The Dagster storage database: ``<billing database>_dagster`` on the same server, with the
    same user, password and connection options (sslmode, ...), as a URL SQLAlchemy accepts."""
    p = dict(conninfo_to_dict(billing_url))
    dbname = f"{p.pop('dbname', None) or 'satusky_billing'}_dagster"
    user, password = p.pop("user", None) or "postgres", p.pop("password", None)
    host, port = p.pop("host", None) or "127.0.0.1", p.pop("port", None)
    auth = quote(user, safe="") + (f":{quote(password, safe='')}" if password else "")
    if host.startswith("/"):  # a Unix socket folder (e.g. pgserver): passed as a query parameter
        netloc, p = f"{auth}@", {"host": host, **({"port": port} if port else {}), **p}
    else:
        netloc = f"{auth}@{host}:{port or LOCAL_PORT}"
    return f"postgresql://{netloc}/{quote(dbname, safe='')}" + (f"?{urlencode(p, safe='/')}" if p else "")


# dagster-postgres' run and schedule storages, and its event log with a connection pool.
STORAGES = [
    ("run_storage", "dagster_postgres.run_storage", "PostgresRunStorage"),
    ("event_log_storage", "billing_pipeline.db.dagster_storage", "PooledPostgresEventLogStorage"),
    ("schedule_storage", "dagster_postgres.schedule_storage", "PostgresScheduleStorage"),
]


def prepare_dagster_home(billing_url: str, home: Path | None = None) -> Path:
    """Write ``dagster.yaml`` (Postgres run, event-log and schedule storage) and set DAGSTER_HOME.

    A password is never written to the file: it then points at ``BILLING_DAGSTER_DATABASE_URL``,
    set here for this process (a separately started daemon or webserver needs it too)."""
    url = dagster_database_url(billing_url)
    ensure_database(url)
    home = home or state_dir() / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    sqlalchemy_url = url.replace("postgresql://", "postgresql+psycopg2://", 1)
    if conninfo_to_dict(url).get("password"):
        # The password stays out of the file: Dagster reads the URL from the environment.
        os.environ[DAGSTER_URL_ENV] = sqlalchemy_url
        storage_url = f"{{env: {DAGSTER_URL_ENV}}}"
    else:
        storage_url = f'"{sqlalchemy_url}"'
    storages = "".join(
        f"{key}:\n  module: {module}\n  class: {cls}\n  config:\n    postgres_url: {storage_url}\n"
        for key, module, cls in STORAGES
    )
    (home / "dagster.yaml").write_text(
        "# Written by the demo: Dagster keeps runs, events and schedules in PostgreSQL. The event log\n"
        "# keeps its connections open between events (billing_pipeline/db/dagster_storage.py).\n"
        + storages
        + "# One run of the money lane at a time (billing_pipeline/core/runs.py): a run a sensor or schedule\n"
        "# starts and a run `billing run` submits wait for each other in the queue.\n"
        "run_queue:\n"
        "  max_concurrent_runs: 4\n"
        "  tag_concurrency_limits:\n"
        f'    - key: "{LANE_TAG}"\n'
        f'      value: "{MONEY_LANE}"\n'
        "      limit: 1\n"
        "telemetry:\n"
        "  enabled: false\n"
    )
    os.environ["DAGSTER_HOME"] = str(home)
    return home
