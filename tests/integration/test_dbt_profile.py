"""dbt reaches the billing database through DBT_PG_* derived from BILLING_DATABASE_URL, over TCP
and over a Unix socket (embedded pgserver)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pgserver
import pytest

from billing_pipeline.db.connection import make_conninfo_url
from billing_pipeline.transform.project import dbt_env, dbt_environment
from tests.support.dbt import run_dbt


def test_dbt_env_for_tcp_and_socket_urls(monkeypatch):
    monkeypatch.delenv("PGOPTIONS", raising=False)
    assert dbt_env("postgresql://bill:s3cret@db.internal:6543/billing") == {
        "DBT_PG_HOST": "db.internal",
        "DBT_PG_PORT": "6543",
        "DBT_PG_USER": "bill",
        "DBT_PG_PASSWORD": "s3cret",
        "DBT_PG_DBNAME": "billing",
        "PGOPTIONS": "-c jit=off",
    }
    socket = make_conninfo_url(host="/tmp/pg-sock", dbname="satusky_billing")
    assert dbt_env(socket)["DBT_PG_HOST"] == "/tmp/pg-sock"
    assert dbt_env(socket)["DBT_PG_DBNAME"] == "satusky_billing"


def test_dbt_environment_is_restored_after_the_run(monkeypatch):
    monkeypatch.setenv("DBT_PG_HOST", "before")
    monkeypatch.delenv("DBT_PG_PASSWORD", raising=False)
    with dbt_environment("postgresql://u:pw@h:1/db"):
        assert os.environ["DBT_PG_HOST"] == "h" and os.environ["DBT_PG_PASSWORD"] == "pw"
    assert os.environ["DBT_PG_HOST"] == "before" and "DBT_PG_PASSWORD" not in os.environ


@pytest.fixture
def embedded_server():
    # Under /tmp with a short path: as root pgserver runs PostgreSQL as its own user, which must
    # traverse the parents, and the socket path must stay short.
    state = Path(tempfile.mkdtemp(prefix="billing-dbt-", dir="/tmp"))
    state.chmod(0o755)
    server = pgserver.get_server(state / "pgdata", cleanup_mode="stop")
    try:
        yield server
    finally:
        server.cleanup()
        shutil.rmtree(state, ignore_errors=True)


def test_dbt_connects_over_a_unix_socket(embedded_server, tmp_path):
    uri = embedded_server.get_uri()
    run = run_dbt(uri, ["debug"], tmp_path)
    assert "Connection test: [OK connection ok]" in run.output
    assert "host: /" in run.output  # the socket folder, not a TCP host
