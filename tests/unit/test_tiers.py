"""The tiers hold: a unit test is marked ``unit`` by its folder and cannot reach a database or
open a socket."""

import socket

import psycopg
import psycopg2
import pytest
from pytest_socket import SocketBlockedError

from tests.support.databases import server_url
from tests.unit.conftest import ServiceRefused


def test_a_unit_test_is_marked_by_its_folder(request):
    assert request.node.get_closest_marker("unit") is not None
    assert request.node.get_closest_marker("integration") is None


def test_a_unit_test_that_asks_for_a_database_is_refused(request):
    with pytest.raises(pytest.UsageError, match="belongs in tests/integration"):
        request.getfixturevalue("databases")


def test_a_unit_test_cannot_open_a_socket():
    """pytest-socket refuses socket.socket (TCP and Unix alike) and name resolution in this tier."""
    with pytest.raises(SocketBlockedError):
        socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with pytest.raises(SocketBlockedError):
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with pytest.raises(SocketBlockedError):
        socket.getaddrinfo("localhost", 5432)


def test_a_unit_test_cannot_reach_postgresql_through_libpq():
    """libpq opens its sockets in C, past pytest-socket: both drivers are refused here, even for
    an IP address that needs no name resolution (the server on 127.0.0.1:5432 is up)."""
    url = server_url("postgres")
    with pytest.raises(ServiceRefused, match="belongs in tests/integration"):
        psycopg.connect(url)
    with pytest.raises(ServiceRefused, match="belongs in tests/integration"):
        psycopg.Connection.connect(url)
    with pytest.raises(ServiceRefused, match="belongs in tests/integration"):
        psycopg2.connect(url)
