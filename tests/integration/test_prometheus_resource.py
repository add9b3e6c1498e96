"""What the Prometheus resource says when the server does not answer: the reason, not a guess."""

from __future__ import annotations

import socket
import threading

import pytest

from billing_pipeline.core.errors import ConfigurationError
from billing_pipeline.resources.prometheus import DEFAULT_TIMEOUT_SECONDS, PrometheusResource, PrometheusUnavailable


@pytest.fixture
def silent_server():
    """A TCP server on 127.0.0.1 that accepts connections and never answers."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    listener.close()


def test_a_query_that_outlives_the_timeout_is_reported_as_a_timeout_not_a_refused_connection(silent_server):
    prometheus = PrometheusResource(url=silent_server, timeout_seconds=0.3)
    with pytest.raises(PrometheusUnavailable) as raised:
        prometheus.query_range("up", 0.0, 60.0, 60, what="for hour 1970-01-01 00:00 UTC")
    message = str(raised.value)
    assert (
        f"Prometheus at {silent_server} did not answer for hour 1970-01-01 00:00 UTC: no answer within 0.3s" in message
    )
    assert "cannot connect" not in message


def test_a_refused_connection_is_reported_as_one():
    with socket.socket() as s:  # a port nobody listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
        with pytest.raises(PrometheusUnavailable, match="cannot connect"):
            PrometheusResource(url=url, timeout_seconds=0.3, retries=0).query("up", 0.0)


def test_the_timeout_comes_from_the_environment_and_a_bad_one_is_refused_by_name(monkeypatch, silent_server):
    monkeypatch.setenv("PROMETHEUS_TIMEOUT_SECONDS", "0.2")
    with pytest.raises(PrometheusUnavailable, match=r"no answer within 0\.2s"):
        PrometheusResource(url=silent_server).query("up", 0.0)

    monkeypatch.delenv("PROMETHEUS_TIMEOUT_SECONDS")
    assert PrometheusResource(url=silent_server).timeout() == DEFAULT_TIMEOUT_SECONDS == 600

    for bad in ("0", "-5", "soon", "inf"):
        monkeypatch.setenv("PROMETHEUS_TIMEOUT_SECONDS", bad)
        with pytest.raises(ConfigurationError, match=f"PROMETHEUS_TIMEOUT_SECONDS='{bad}' is not a number"):
            PrometheusResource(url=silent_server).query("up", 0.0)
