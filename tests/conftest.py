"""Fixtures shared by every test: real PostgreSQL databases, migrated; and the three tiers.

Tests live in one of three folders, each with its marker (``-m unit`` and so on):

* ``tests/unit``: no services (no database, Prometheus, dbt build or subprocess); under a minute;
* ``tests/integration``: real PostgreSQL, Prometheus, dbt builds and Dagster runs, in process;
* ``tests/e2e``: the product as a user runs it: the ``billing`` console script, ``dagster dev``,
  the demo, the UI in a browser.

``scripts/test unit`` (or ``integration``, ``e2e``) runs one tier; ``scripts/test`` runs all.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

# The ledger signs entries with an HMAC key from the environment (docs/rules/ledger.md); the
# whole session (and every subprocess it starts) uses this throw-away one.
os.environ.setdefault("BILLING_LEDGER_KEY", "test-ledger-key-" + "0" * 32)
# The tests' scenarios start in 2025; every process they start (dagster, billing) inherits it.
os.environ.setdefault("BILLING_FIRST_HOUR", "2025-01-01T00:00:00Z")

from tests.support.clock import frozen_clock
from tests.support.databases import DatabaseFactory

# Every property test is seeded: the examples derive from the test's own code, never from a
# random seed, so a run's outcome cannot differ from the last one's (tests/unit/test_seeded.py).
hypothesis_settings.register_profile("seeded", derandomize=True, database=None)
hypothesis_settings.load_profile("seeded")


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


TIERS = ("unit", "integration", "e2e")
TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    """Mark every test with its tier, from its folder; a test outside the tiers is an error."""
    for item in items:
        relative = Path(str(item.path)).resolve().relative_to(TESTS)
        tier = relative.parts[0] if len(relative.parts) > 1 else None
        if tier not in TIERS:
            raise pytest.UsageError(f"{relative}: put the test in one of tests/{{{','.join(TIERS)}}}/")
        item.add_marker(getattr(pytest.mark, tier))
