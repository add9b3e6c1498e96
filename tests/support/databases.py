"""Throw-away billing databases on the real PostgreSQL server.

The schema is migrated once into a template database; each test that needs a clean slate gets
its own copy (``CREATE DATABASE ... TEMPLATE``), because the ledger is append-only and cannot be
emptied between tests.
"""

from __future__ import annotations

import os
import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg
from psycopg import sql

from billing_pipeline.db.connection import make_conninfo_url
from billing_pipeline.db.migrate import upgrade

SERVER_HOST = os.environ.get("TEST_PG_HOST", "127.0.0.1")
SERVER_PORT = int(os.environ.get("TEST_PG_PORT", "5432"))


def server_url(dbname: str) -> str:
    return make_conninfo_url(host=SERVER_HOST, port=SERVER_PORT, dbname=dbname)


def _admin() -> psycopg.Connection:
    return psycopg.connect(server_url("postgres"), autocommit=True)


class DatabaseFactory:
    """Creates migrated databases for one test session and drops them at the end."""

    def __init__(self) -> None:
        self.prefix = f"billing_test_{uuid.uuid4().hex[:8]}"
        self.template = f"{self.prefix}_template"
        self.created: list[str] = []
        upgrade(server_url(self.template))
        self.created.append(self.template)

    def new(self) -> str:
        name = f"{self.prefix}_{len(self.created)}"
        with _admin() as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(self.template))
            )
        self.created.append(name)
        return server_url(name)

    def drop_all(self) -> None:
        # In parallel: each DROP DATABASE waits for a checkpoint, and concurrent drops share them.
        def drop(name: str) -> None:
            with _admin() as conn:
                for db in (name, f"{name}_dagster"):  # a test's Dagster storage lives beside it
                    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))

        copies = [name for name in self.created if name != self.template]
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(drop, copies))
        drop(self.template)
