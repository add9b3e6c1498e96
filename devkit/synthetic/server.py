"""A local Prometheus process serving a backfilled TSDB, on 127.0.0.1 only.

    with PrometheusServer(tsdb_dir) as prom:     # starts, waits until /-/ready answers
        prom.url                                 # "http://127.0.0.1:<free port>"
        prom.stop(); prom.start()                # same port and data after a restart

The process runs in its own session (``setsid``) and is stopped by its process-group id, so no
child survives; nothing else is ever signalled. Scraping is off (empty ``scrape_configs``) and
retention is 10 years so backfilled history is kept.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from billing_pipeline.core.errors import ConfigurationError
from devkit.synthetic.tsdb import find_binary


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrometheusServer:
    """A ``prometheus`` process over ``tsdb_dir``; ``port`` defaults to a free one."""

    def __init__(self, tsdb_dir: str | Path, port: int | None = None, *, log_path: str | Path | None = None) -> None:
        self.tsdb_dir = Path(tsdb_dir)
        self.port = port or free_port()
        self.config_path = self.tsdb_dir.parent / f"{self.tsdb_dir.name}.prometheus.yml"
        self.log_path = Path(log_path) if log_path else self.tsdb_dir.parent / f"{self.tsdb_dir.name}.prometheus.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self, timeout: float = 30.0) -> PrometheusServer:
        if self.process and self.process.poll() is None:
            return self
        self.config_path.write_text("global:\n  scrape_interval: 1m\nscrape_configs: []\n")
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                find_binary("prometheus"),
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.tsdb_dir}",
                "--storage.tsdb.retention.time=10y",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ConfigurationError(
                    f"prometheus exited with code {self.process.returncode} at start; see {self.log_path}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise ConfigurationError(f"prometheus on {self.url} was not ready after {timeout:.0f}s; see {self.log_path}")

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the process group started by ``start`` (SIGTERM, then SIGKILL)."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # pgid == pid: the session we created
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
