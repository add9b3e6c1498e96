"""The unit tier uses no services, and cannot: every unit test runs with sockets disabled
(pytest-socket) and PostgreSQL's client library refused, so a test that reaches for a server fails
at once, naming where it belongs. Only this folder is affected: integration and e2e tests keep
their sockets, whether the tiers run alone or together (``scripts/test``, with xdist)."""

import psycopg
import psycopg2
import pytest

SERVICES = "a unit test opened a connection: it belongs in tests/integration/ (the unit tier uses no services)"


@pytest.fixture(scope="session")
def databases():
    raise pytest.UsageError("a unit test asked for a database: it belongs in tests/integration/")


class ServiceRefused(RuntimeError):
    """Raised in the unit tier when a test reaches for a server by a path that bypasses Python's
    socket module (libpq opens its own sockets in C)."""


def _refuse(*_args, **_kwargs):
    raise ServiceRefused(SERVICES)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    # This hook is scoped to tests/unit by pytest (a conftest's runtest hooks apply to the items
    # under it). The marker makes pytest-socket's own setup hook, which runs next, disable
    # socket.socket (TCP, UDP and Unix) for the test and its fixtures; its teardown restores it.
    item.add_marker(pytest.mark.disable_socket)


@pytest.fixture(autouse=True)
def _no_libpq(monkeypatch):
    """libpq connects in C, unseen by pytest-socket when the host is an IP address: refuse both
    PostgreSQL drivers (psycopg for the product, psycopg2 for Dagster's storage and SQLAlchemy)."""
    monkeypatch.setattr(psycopg, "connect", _refuse)  # an alias of Connection.connect, bound at import
    monkeypatch.setattr(psycopg.Connection, "connect", classmethod(_refuse))
    monkeypatch.setattr(psycopg.AsyncConnection, "connect", classmethod(_refuse))
    monkeypatch.setattr(psycopg2, "connect", _refuse)
