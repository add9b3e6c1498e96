"""README promise "Where the demo's data lives": BILLING_DATABASE_URL when set; else the
PostgreSQL server on BILLING_LOCAL_PG (default 127.0.0.1:5432) when one answers, database
satusky_billing; else an embedded PostgreSQL. Commands never fall back (test_trust_config.py)."""

from __future__ import annotations

import socket

import pytest

import devkit.demo.database as connection
from billing_pipeline.core.errors import ConfigurationError
from devkit.demo.database import demo_database_url


@pytest.fixture
def listening_port():
    """A port on 127.0.0.1 where something accepts connections (what "a server answers" checks)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.fixture
def closed_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return port  # bound once, now closed: nothing answers there


@pytest.fixture
def no_embedded(monkeypatch):
    """Records whether the embedded server was asked for, instead of starting one."""
    asked = []
    monkeypatch.setattr(connection, "_embedded_server_url", lambda: asked.append(True) or "embedded-url")
    return asked


def test_the_environment_wins_even_when_a_local_server_answers(monkeypatch, listening_port, no_embedded):
    monkeypatch.setenv("BILLING_DATABASE_URL", "postgresql://u@db.example:5433/billing")
    monkeypatch.setenv("BILLING_LOCAL_PG", f"127.0.0.1:{listening_port}")
    assert demo_database_url() == "postgresql://u@db.example:5433/billing" and no_embedded == []


def test_unset_and_a_local_server_answers_gives_its_satusky_billing(monkeypatch, listening_port, no_embedded):
    monkeypatch.delenv("BILLING_DATABASE_URL", raising=False)
    monkeypatch.setenv("BILLING_LOCAL_PG", f"127.0.0.1:{listening_port}")
    assert demo_database_url() == f"postgresql://postgres@127.0.0.1:{listening_port}/satusky_billing"
    assert no_embedded == []


def test_the_default_local_server_is_127_0_0_1_5432(monkeypatch, no_embedded):
    # The machines (CI's too) run PostgreSQL there: the demo's default choice.
    monkeypatch.delenv("BILLING_DATABASE_URL", raising=False)
    monkeypatch.delenv("BILLING_LOCAL_PG", raising=False)
    assert connection.local_server() == ("127.0.0.1", 5432)
    assert demo_database_url() == "postgresql://postgres@127.0.0.1:5432/satusky_billing"


def test_nothing_answers_falls_back_to_embedded(monkeypatch, closed_port, no_embedded):
    monkeypatch.delenv("BILLING_DATABASE_URL", raising=False)
    monkeypatch.setenv("BILLING_LOCAL_PG", f"127.0.0.1:{closed_port}")
    assert demo_database_url() == "embedded-url" and no_embedded == [True]


def test_nothing_answers_and_no_embedded_names_what_was_tried(monkeypatch, closed_port, no_embedded):
    monkeypatch.delenv("BILLING_DATABASE_URL", raising=False)
    monkeypatch.setenv("BILLING_LOCAL_PG", f"127.0.0.1:{closed_port}")
    with pytest.raises(ConfigurationError, match=f"nothing answers on 127.0.0.1:{closed_port}.*BILLING_DATABASE_URL"):
        demo_database_url(allow_embedded=False)
    assert no_embedded == []
