"""The unit tier uses no services: asking for a database fails at once, naming where the test
belongs, and no unit test can open a socket (pytest-socket, for every test in this folder, also
when all tiers run in one pytest process)."""

import psycopg
import pytest
from pytest_socket import SocketBlockedError, disable_socket, enable_socket


@pytest.fixture(scope="session")
def databases():
    raise pytest.UsageError("a unit test asked for a database: it belongs in tests/integration/")


def _refuse_libpq(*args, **kwargs):
    raise SocketBlockedError()  # libpq connects in C, below the socket module pytest-socket guards


@pytest.fixture(autouse=True)
def _no_sockets(monkeypatch):
    disable_socket(allow_unix_socket=False)
    monkeypatch.setattr(psycopg, "connect", _refuse_libpq)
    monkeypatch.setattr(psycopg.Connection, "connect", classmethod(_refuse_libpq))
    yield
    enable_socket()
