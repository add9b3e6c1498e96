"""A small priced platform for whole-cycle tests, and the `billing` console script as a process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

from billing_pipeline.db.connection import connect
from devkit.synthetic import GIB, Account, Cluster, Container, Deployment, Pod, Rental, write_platform_rows
from tests.support import dbt as d
from tests.support.payments import set_balance

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
START = datetime(2025, 3, 3, tzinfo=UTC)
H = timedelta(hours=1)


def small_cluster(hours: int = 3) -> Cluster:
    """Two accounts, a shared node and a rented one, for ``hours`` hours from ``START``."""
    return Cluster(
        start=START,
        minutes=hours * 60,
        pod_cgroup_series=False,
        accounts=(Account("acct-a", "A"), Account("acct-b", "B")),
        deployments=(Deployment("dep-a", "acct-a", "ns-a", "web"), Deployment("dep-b", "acct-b", "ns-b", "api")),
        pods=(
            Pod(
                "pa1",
                "dep-a",
                "shared-1",
                (Container("app", cpu_cores=0.5, cpu_request=1.0, memory_bytes=GIB, memory_request=GIB),),
            ),
            Pod(
                "pb1",
                "dep-b",
                "rented-node",
                (Container("app", cpu_cores=2.0, cpu_request=1.0, memory_bytes=2 * GIB, memory_request=GIB),),
            ),
        ),
        rentals=(Rental("rent-b", "acct-b", "m-1", "standard-8", "rented-node", START + timedelta(minutes=30)),),
    )


def load_priced_platform(db_url: str, cluster: Cluster, opening: str = "100") -> None:
    """The cluster's platform rows, prices for every resource, and opening credit per account."""
    with connect(db_url) as conn:
        write_platform_rows(conn, cluster)
    d.add_price(db_url, "cpu", "cpu", "core_hour", "0.04", basis="max_request_usage")
    d.add_price(db_url, "mem", "memory", "gib_hour", "0.005", basis="usage")
    d.add_price(db_url, "gpu", "gpu", "gpu_hour", "1.5")
    d.add_price(db_url, "sto", "storage", "gib_hour", "0.0002")
    d.add_price(db_url, "egr", "network_egress", "gib", "0.08")
    d.add_price(db_url, "std8", "machine", "machine_hour", "0.90", machine_type="standard-8")
    for account in cluster.accounts:
        set_balance(db_url, account.id, Decimal(opening), f"opening-{account.id}")


def billing(args: list[str], env: dict, *, json_output: bool = True) -> tuple[int, dict | str, str]:
    """The `billing` console script as a subprocess: (exit code, JSON document or stdout, stderr)."""
    done = subprocess.run(
        [str(BIN / "billing"), *args, *(["--json"] if json_output else [])],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        cwd=REPO,
    )
    return done.returncode, json.loads(done.stdout) if json_output else done.stdout, done.stderr


def billing_process(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "billing"), *args, "--json"],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=open(log, "w"),
        text=True,
    )


def ledger_differs_from_charges(url: str) -> list:
    """Account-hours where the ledger's usage entries differ from fct_usage_charges (empty: equal)."""
    return d.query(
        url,
        """
        WITH owed AS (SELECT account_id, hour, usage_kind, amount FROM analytics.fct_usage_charges),
        settled AS (SELECT account_id, (reference->>'hour')::timestamptz AS hour, reference->>'usage_kind' AS usage_kind,
                           -sum(amount) AS amount FROM billing.credit_transactions
                    WHERE type IN ('usage_deduction', 'reversal') GROUP BY 1, 2, 3)
        SELECT * FROM owed o FULL JOIN settled s USING (account_id, hour, usage_kind)
        WHERE coalesce(o.amount, 0) <> coalesce(s.amount, 0)""",
    )


def environment(db_url: str, prometheus_url: str, dagster_home: Path) -> dict:
    return {
        **os.environ,
        "PROMETHEUS_URL": prometheus_url,
        "BILLING_DATABASE_URL": db_url,
        "DAGSTER_HOME": str(dagster_home),
    }
