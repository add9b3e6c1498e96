"""The unit tier cannot reach a service: a socket, TCP or Unix, is refused before it connects."""

import socket

import psycopg
import pytest
from pytest_socket import SocketBlockedError


def test_a_tcp_socket_is_refused():
    with pytest.raises(SocketBlockedError):
        socket.create_connection(("127.0.0.1", 5432), timeout=1)


def test_a_database_connection_is_refused():
    # psycopg connects in C (libpq), below Python's socket module: refused by tests/unit/conftest.py.
    with pytest.raises(SocketBlockedError):
        psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=1").close()
