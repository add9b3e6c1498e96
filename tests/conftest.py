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
from hypothesis import settings

# The ledger signs entries with an HMAC key from the environment (docs/rules/ledger.md); the
# whole session (and every subprocess it starts) uses this throw-away one.
os.environ.setdefault("BILLING_LEDGER_KEY", "test-ledger-key-" + "0" * 32)
# The tests' scenarios start in 2025; every process they start (dagster, billing) inherits it.
os.environ.setdefault("BILLING_FIRST_HOUR", "2025-01-01T00:00:00Z")

from tests.support.clock import frozen_clock
from tests.support.databases import DatabaseFactory

# Every property test is seeded, globally: this profile is loaded before any test module is
# imported, so every @given and @settings made afterwards inherits derandomize=True (the examples
# come from a hash of the test's source: the same on every run and machine, and no example
# database in the repository). A test can still pin @seed(n); derandomize=False is refused at
# collection (pytest_collection_modifyitems below).
settings.register_profile("seeded", derandomize=True, print_blob=True)
settings.load_profile("seeded")


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


def pytest_addoption(parser):
    parser.addoption(
        "--update-screenshots",
        action="store_true",
        help="tests/e2e/test_browser.py writes its screenshots into docs/images/ (the README's pictures) "
        "instead of pytest's temporary folder",
    )


TIERS = ("unit", "integration", "e2e")
TESTS = Path(__file__).resolve().parent


def is_seeded(test) -> bool:
    """A Hypothesis test draws the same examples on every run: derandomised, or an explicit @seed."""
    if not getattr(test, "is_hypothesis_test", False):
        return True
    return test._hypothesis_internal_use_settings.derandomize or test._hypothesis_internal_use_seed is not None


def pytest_collection_modifyitems(config, items):
    """Mark every test with its tier, from its folder; a test outside the tiers is an error, and
    so is a property test that is not seeded."""
    unseeded = sorted({item.nodeid.split("[")[0] for item in items if not is_seeded(getattr(item, "obj", None))})
    if unseeded:
        raise pytest.UsageError(
            f"property tests not seeded: {', '.join(unseeded)}: let tests/conftest.py's 'seeded' profile "
            "derandomise them (no derandomize=False, no other --hypothesis-profile) or pin @seed(n)"
        )
    for item in items:
        relative = Path(str(item.path)).resolve().relative_to(TESTS)
        tier = relative.parts[0] if len(relative.parts) > 1 else None
        if tier not in TIERS:
            raise pytest.UsageError(f"{relative}: put the test in one of tests/{{{','.join(TIERS)}}}/")
        item.add_marker(getattr(pytest.mark, tier))
