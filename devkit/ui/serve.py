"""The Dagster UI on the demo's instance, with everything its jobs talk to (``scripts/ui``).

After ``scripts/demo``, every job launched from the UI must find what the demo found: the
demo's database and Dagster instance, Prometheus serving the demo cluster's metrics, the
Kubernetes API emulator, the Stripe emulator and the SMTP and webhook sinks. This starts them
(127.0.0.1 only, the same starters the demo uses), sets their settings in the environment of
``dagster dev`` alone, runs ``dagster dev`` on the demo's instance in its own process group,
and, when that ends (Ctrl-C, SIGTERM), stops it by its process-group id and then every service
it started. Nothing else is signalled.

    scripts/ui [--port 3000]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

from billing_pipeline.core.errors import ConfigurationError
from billing_pipeline.core.partitions import FIRST_HOUR_VARIABLE
from billing_pipeline.db.connection import redact_url, state_dir
from billing_pipeline.db.dagster_instance import prepare_dagster_home
from billing_pipeline.ledger import ensure_demo_ledger_key
from devkit.demo import platform
from devkit.demo.database import demo_database_url
from devkit.demo.payments import local_payment_services
from devkit.emulators.kube_emulator import KubeEmulator
from devkit.synthetic import PrometheusServer, ensure_tsdb

REPO = Path(__file__).resolve().parents[2]
STOP_SECONDS = 30


def ui_environment(database_url: str, dagster_home: Path, services: dict[str, str]) -> dict[str, str]:
    """The environment of ``dagster dev``: this process's, the demo's settings and the services'."""
    return {
        **os.environ,
        "BILLING_DATABASE_URL": database_url,
        "DAGSTER_HOME": str(dagster_home),
        # The demo's ledger key, unless the caller brought one (as the demo does).
        "BILLING_LEDGER_KEY": os.environ.get("BILLING_LEDGER_KEY")
        or ensure_demo_ledger_key(state_dir()).read_text().strip(),
        # Partitions start at the demo's first hour, not thousands of missing hours before it.
        FIRST_HOUR_VARIABLE: os.environ.get(FIRST_HOUR_VARIABLE) or platform.DEMO_FIRST_HOUR.isoformat(),
        **services,
    }


def stop_group(process: subprocess.Popen, timeout: float = STOP_SECONDS) -> None:
    """SIGTERM to the process group we created (pgid == pid), SIGKILL if it outlives ``timeout``."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/ui", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=3000, help="the UI's port on 127.0.0.1 (default 3000)")
    args = parser.parse_args(argv)

    url = demo_database_url()
    if not (state_dir() / "dagster_home" / "dagster.yaml").exists():
        raise ConfigurationError(f"no demo instance in {state_dir()}: run scripts/demo first, then scripts/ui.")
    home = prepare_dagster_home(url)
    with ExitStack() as services:
        prometheus = services.enter_context(
            PrometheusServer(ensure_tsdb(platform.DEMO_CLUSTER, state_dir() / "demo-tsdb"))
        )
        kube = services.enter_context(KubeEmulator())
        kubeconfig = kube.write_kubeconfig(state_dir() / "ui-kubeconfig")
        payments = services.enter_context(local_payment_services())  # exports the Stripe/SMTP/webhook settings
        env = ui_environment(url, home, {"PROMETHEUS_URL": prometheus.url, "KUBECONFIG": str(kubeconfig)})
        print(f"Prometheus {prometheus.url} (pid {prometheus.pid}), Kubernetes API emulator {kube.url}")
        print(
            f"Stripe emulator {payments.stripe.url}, SMTP {payments.smtp.host}:{payments.smtp.port}, "
            f"webhooks {payments.webhooks.url}"
        )
        print(f"Dagster instance {home} on {redact_url(url)}; {FIRST_HOUR_VARIABLE}={env[FIRST_HOUR_VARIABLE]}")
        dev = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "dagster"),
                "dev",
                "-w",
                "workspace.yaml",
                "-h",
                "127.0.0.1",
                "-p",
                str(args.port),
            ],
            cwd=REPO,
            env=env,
            start_new_session=True,  # its own group: stopped whole, by its id
        )
        services.callback(stop_group, dev)
        print(f"Dagster UI: http://127.0.0.1:{args.port} (dagster dev, pid {dev.pid}); Ctrl-C stops everything.")
        sys.stdout.flush()

        def _terminate(signum, _frame):
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, _terminate)
        try:
            code = dev.wait()
        except KeyboardInterrupt:
            code = 0
        print("Stopping dagster dev and the services ...", flush=True)
    return code
