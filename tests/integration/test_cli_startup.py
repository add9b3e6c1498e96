"""`billing --help` and `billing status ACCOUNT` start without the heavy libraries, seen from a
fresh interpreter as a shell starts the console script: Python's own import log
(``PYTHONPROFILEIMPORTTIME=1``, the environment form of ``-X importtime``) lists every module
the process imported. The time itself is measured and written in the README, not asserted here
(a shared machine's timings are not a test)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.platform import create_accounts

BILLING = Path(sys.executable).parent / "billing"
HEAVY = ("dagster", "dagster_dbt", "dagster_postgres", "dbt", "weasyprint", "kubernetes", "stripe", "alembic")


def imported(*argv: str, env: dict[str, str]) -> tuple[subprocess.CompletedProcess, set[str]]:
    result = subprocess.run(
        [str(BILLING), *argv],
        env={**os.environ, **env, "PYTHONPROFILEIMPORTTIME": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    modules = {
        line.rsplit("|", 1)[1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    return result, modules


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY)


def test_help_imports_neither_dagster_nor_the_database_driver():
    result, modules = imported("--help", env={})
    assert result.returncode == 0 and result.stdout.startswith("usage: billing ")
    assert "billing_pipeline.cli.main" in modules  # the log is real
    assert heavy(modules) == []
    assert not {"psycopg", "sqlalchemy", "rich", "yaml"} & {m.split(".")[0] for m in modules}


def test_status_reads_the_database_without_dagster(db_url):
    create_accounts(db_url, "acme")
    result, modules = imported("status", "acme", "--now", "2026-11-24T16:00Z", env={"BILLING_DATABASE_URL": db_url})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("Account acme (Account acme): balance +0.000000 credits.\n")
    assert {"psycopg", "billing_pipeline.lifecycle.report"} <= modules
    assert heavy(modules) == []


def test_accounts_reads_the_database_without_dagster(db_url):
    create_accounts(db_url, "acme", "globex")
    result, modules = imported("accounts", "--json", env={"BILLING_DATABASE_URL": db_url})
    assert result.returncode == 0, result.stderr[-2000:]
    assert '"count": 2' in result.stdout
    assert heavy(modules) == []
