"""The pipeline's sessions run with JIT off (db/connection.py: SESSION_OPTIONS), its own and
dbt's alike, and an operator's options (in BILLING_DATABASE_URL or PGOPTIONS) still apply after
ours, so a setting chosen there wins."""

from __future__ import annotations

from urllib.parse import quote

import psycopg

from billing_pipeline.db.connection import connect, session_options
from billing_pipeline.transform.project import dbt_env
from tests.support.dbt import run_dbt

SETTINGS = "SELECT current_setting('jit'), current_setting('work_mem')"


def _settings(url: str) -> tuple[str, str]:
    with connect(url) as conn:
        return conn.execute(SETTINGS).fetchone()


def _server_default(url: str) -> tuple[str, str]:
    with psycopg.connect(url, options="") as conn:
        return conn.execute(SETTINGS).fetchone()


def test_the_pipelines_sessions_run_without_jit(db_url, monkeypatch):
    monkeypatch.delenv("PGOPTIONS", raising=False)
    assert session_options(db_url) == "-c jit=off"
    server_jit, server_work_mem = _server_default(db_url)
    assert server_jit == "on"  # what the test server does when nobody says otherwise
    assert _settings(db_url) == ("off", server_work_mem)  # only jit is the pipeline's choice


def test_an_operators_options_apply_after_the_pipelines(db_url, monkeypatch):
    monkeypatch.setenv("PGOPTIONS", "-c work_mem=5MB")
    assert session_options(db_url) == "-c jit=off -c work_mem=5MB"
    assert _settings(db_url) == ("off", "5MB")
    # Options in the URL take the place of PGOPTIONS, as libpq gives them; a jit chosen there wins.
    url = f"{db_url}{'&' if '?' in db_url else '?'}options={quote('-c jit=on')}"
    assert session_options(url) == "-c jit=off -c jit=on"
    assert _settings(url) == ("on", _server_default(db_url)[1])


def test_dbts_sessions_run_without_jit_and_keep_the_operators_options(db_url, tmp_path, monkeypatch):
    monkeypatch.setenv("PGOPTIONS", "-c work_mem=5MB")
    assert dbt_env(db_url)["PGOPTIONS"] == "-c jit=off -c work_mem=5MB"
    query = "select current_setting('jit') as jit, current_setting('work_mem') as work_mem"
    run = run_dbt(db_url, ["show", "--inline", query, "--output", "json"], tmp_path)
    assert '"jit": "off"' in run.output and '"work_mem": "5MB"' in run.output
