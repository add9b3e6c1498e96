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


def run_console_entry(prelude: str, *argv: str) -> subprocess.CompletedProcess:
    """The console script's entry (``console_entry``) in a fresh interpreter, after ``prelude``."""
    code = f"import sys\n{prelude}\nfrom billing_pipeline.cli.main import console_entry\nsys.argv = ['billing', *{list(argv)!r}]\nconsole_entry()\n"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_the_quick_exit_keeps_what_a_normal_exit_does():
    # The process leaves with os._exit (no interpreter teardown), but first: a non-daemon thread
    # is waited for, atexit handlers run, and everything printed reaches the pipe.
    prelude = (
        "import atexit, threading, time\n"
        "atexit.register(lambda: print('atexit handler ran', flush=True))\n"
        "threading.Thread(target=lambda: (time.sleep(0.3), print('thread finished'))).start()\n"
    )
    done = run_console_entry(prelude, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: billing ")
    assert "thread finished\n" in done.stdout and done.stdout.endswith("atexit handler ran\n")
    helped = subprocess.run([str(BILLING), "--help"], capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0 and helped.stdout.startswith("usage: billing ") and len(helped.stdout) > 2000


def test_the_quick_exit_keeps_the_exit_status():
    assert run_console_entry("", "no-such-command").returncode == 2
    assert run_console_entry("", "--version").returncode == 0
    failed = subprocess.run(
        [str(BILLING), "status", "acme"],
        env={k: v for k, v in os.environ.items() if k != "BILLING_DATABASE_URL"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert failed.returncode == 3 and failed.stderr.startswith("billing: BILLING_DATABASE_URL is not set")
