"""Fixtures shared by every test: real PostgreSQL databases, migrated."""

from __future__ import annotations

import os

import pytest

# The ledger signs entries with an HMAC key from the environment (docs/rules/ledger.md); the
# whole session (and every subprocess it starts) uses this throw-away one.
os.environ.setdefault("BILLING_LEDGER_KEY", "test-ledger-key-" + "0" * 32)
# The tests' scenarios start in 2025; every process they start (dagster, billing) inherits it.
os.environ.setdefault("BILLING_FIRST_HOUR", "2025-01-01T00:00:00Z")

from tests.support.databases import DatabaseFactory


@pytest.fixture(scope="session")
def databases():
    factory = DatabaseFactory()
    yield factory
    factory.drop_all()


@pytest.fixture
def db_url(databases, monkeypatch) -> str:
    """A fresh, migrated billing database; also exported as BILLING_DATABASE_URL."""
    url = databases.new()
    monkeypatch.setenv("BILLING_DATABASE_URL", url)
    return url
