"""README promise: `billing db upgrade` is safe to run twice at once, serialised by an advisory
lock (billing_pipeline/migrations/env.py). Through the `billing` console script, as an operator
runs it."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

import psycopg
from psycopg import sql

from billing_pipeline.db.migrate import head_revision
from tests.support.databases import server_url

BILLING = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "billing")
MIGRATION_LOCK = 7_420_001  # the id env.py locks; a test that holds it makes every upgrade wait


def _start_upgrade(url: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [BILLING, "db", "upgrade", *extra, "--json"],
        env={**os.environ, "BILLING_DATABASE_URL": url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


def _fresh_database(databases) -> tuple[str, str]:
    name = f"{databases.prefix}_upgrade_{uuid.uuid4().hex[:6]}"
    databases.created.append(name)  # dropped with the session's databases
    return name, server_url(name)


def _schema_state(url: str) -> tuple[list[tuple], int]:
    with psycopg.connect(url) as conn:
        versions = conn.execute("SELECT version_num FROM billing.alembic_version").fetchall()
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'billing'").fetchone()[0]
    return versions, tables


def test_two_upgrades_wait_for_the_lock_then_both_succeed(databases):
    name, url = _fresh_database(databases)
    with psycopg.connect(server_url("postgres"), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with psycopg.connect(url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        procs = [_start_upgrade(url), _start_upgrade(url)]
        try:
            deadline = time.monotonic() + 120
            while True:  # both are waiting on the migration lock, and neither has migrated anything
                waiting = holder.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %s AND NOT granted "
                    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                    (MIGRATION_LOCK,),
                ).fetchone()[0]
                if waiting == 2:
                    break
                assert all(p.poll() is None for p in procs), [_finish(p) for p in procs if p.poll() is not None]
                assert time.monotonic() < deadline, f"{waiting} upgrade(s) waiting on the advisory lock, not 2"
                time.sleep(0.1)
            assert holder.execute("SELECT to_regclass('billing.alembic_version')").fetchone()[0] is None
        finally:
            holder.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
        results = [_finish(p) for p in procs]
    assert [r[0] for r in results] == [0, 0], results
    assert all(f'"revision": "{head_revision()}"' in out for _, out, _ in results)
    versions, tables = _schema_state(url)
    assert versions == [(head_revision(),)] and tables > 10


def test_two_upgrades_of_a_missing_database_at_once_both_succeed(databases):
    # Two pairs at once: the race on CREATE DATABASE (before any advisory lock can exist in the
    # new database) is hit more often than not, and must be harmless.
    urls = [_fresh_database(databases)[1] for _ in range(2)]
    procs = [_start_upgrade(url, "--create") for url in urls for _ in range(2)]
    results = [_finish(p) for p in procs]
    assert [r[0] for r in results] == [0, 0, 0, 0], results
    for url in urls:
        versions, _ = _schema_state(url)
        assert versions == [(head_revision(),)]
