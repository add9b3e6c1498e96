"""README promise: the demo stops every service it started (Prometheus, the Kubernetes API
emulator, localstripe, the SMTP sink, the webhook receiver), even when it fails half-way.

The demo's own ``main`` runs in this process up to the point where every service is up; there
the test records the processes and ports it started, then makes the next step fail. After
``main`` has unwound, each of those processes must be gone and each port closed."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import devkit.demo.run as demo_run


class DemoStoppedHere(Exception):
    pass


def _children(pid: int) -> set[int]:
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # "pid (comm) state ppid ...": comm may hold spaces, so split after its closing paren.
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.add(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its exit status waits to be read


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def test_the_demo_stops_every_service_it_started_even_when_it_fails(db_url, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BILLING_STATE_DIR", str(tmp_path / "state"))
    for name in (
        "PROMETHEUS_URL",
        "KUBECONFIG",
        "STRIPE_API_KEY",
        "STRIPE_API_BASE",
        "SMTP_HOST",
        "SMTP_PORT",
        "SMTP_FROM",
        "BILLING_WEBHOOK_SECRET",
    ):
        monkeypatch.delenv(name, raising=False)  # main exports these; monkeypatch puts them back after
    empty_tsdb = tmp_path / "tsdb"
    empty_tsdb.mkdir()
    monkeypatch.setattr(demo_run, "ensure_tsdb", lambda cluster, path: empty_tsdb)  # Prometheus, no backfill
    before = _children(os.getpid())
    started: dict[str, set[int]] = {}

    def every_service_is_up(conn):
        started["pids"] = _children(os.getpid()) - before
        raise DemoStoppedHere

    monkeypatch.setattr(demo_run.platform, "load_platform", every_service_is_up)
    with pytest.raises(DemoStoppedHere):
        demo_run.main()
    out = capsys.readouterr().out

    prometheus_pid = int(re.search(r"Prometheus http://127\.0\.0\.1:\d+ .*pid (\d+)", out)[1])
    ports = [urlsplit(u) for u in re.findall(r"(http://127\.0\.0\.1:\d+)", out)]
    smtp_port = int(re.search(r"SMTP 127\.0\.0\.1:(\d+)", out)[1])
    endpoints = {(u.hostname, u.port) for u in ports} | {("127.0.0.1", smtp_port)}
    # Prometheus and localstripe are processes of their own; the rest are servers in this one.
    assert prometheus_pid in started["pids"] and len(started["pids"]) >= 2
    assert len(endpoints) == 5  # Prometheus, Kubernetes API, Stripe, SMTP, webhooks
    assert [pid for pid in started["pids"] if _alive(pid)] == []
    assert [e for e in endpoints if _answers(*e)] == []
