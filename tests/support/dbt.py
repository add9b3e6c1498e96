"""Running the dbt project against a test database, and seeding its sources with SQL.

Each call gets its own target/log folder (tests run in parallel under xdist); dbt reaches the
database through the same DBT_PG_* variables the Dagster asset sets.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import psycopg

from billing_pipeline.transform.project import DBT_PROJECT_DIR, DBT_THREADS, dbt_env, dbt_executable

UTC = UTC


@dataclass
class DbtRun:
    returncode: int
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run_dbt(db_url: str, args: list[str], work_dir: Path, *, vars: dict | None = None, check: bool = True) -> DbtRun:
    """``dbt <args>`` on the database at ``db_url``; artifacts under ``work_dir``."""
    env = {
        **os.environ,
        **dbt_env(db_url),
        "DBT_PROFILES_DIR": str(DBT_PROJECT_DIR),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    cmd = [dbt_executable(), *args, "--project-dir", str(DBT_PROJECT_DIR), "--log-path", str(work_dir / "logs")]
    if args and args[0] != "debug":  # `dbt debug` writes no artifacts (and refuses the flag)
        cmd += ["--target-path", str(work_dir / "target")]
    if args and args[0] in ("build", "run", "test"):
        cmd += ["--threads", str(DBT_THREADS)]
    if vars:
        cmd += ["--vars", json.dumps(vars)]
    proc = subprocess.run(cmd, env=env, cwd=DBT_PROJECT_DIR, capture_output=True, text=True, timeout=600)
    result = DbtRun(proc.returncode, proc.stdout + proc.stderr)
    if check and not result.ok:
        raise AssertionError(f"dbt {' '.join(args)} failed:\n{result.output[-6000:]}")
    return result


EXCLUDE_UNIT_TESTS = ["--exclude-resource-type", "unit_test"]


def window(start: datetime, hours: int = 1) -> dict[str, str]:
    return {"min_hour": start.isoformat(), "max_hour": (start + timedelta(hours=hours)).isoformat()}


def build(
    db_url: str,
    work_dir: Path,
    *,
    start: datetime | None = None,
    hours: int = 1,
    extra: list[str] | None = None,
    vars: dict | None = None,
    check: bool = True,
) -> DbtRun:
    """``dbt build`` for the hours [start, start + hours), or everything without ``start``."""
    v = dict(vars or {})
    if start is not None:
        v.update(window(start, hours))
    # Unit tests have their own pytest (test_dbt_unit_tests.py); here only models and data tests.
    args = ["build", *EXCLUDE_UNIT_TESTS, *(extra or [])]
    return run_dbt(db_url, args, work_dir, vars=v or None, check=check)


def query(db_url: str, sql: str, params: tuple | dict = ()) -> list[tuple]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(sql, params).fetchall()


# --- seeding the sources -------------------------------------------------------------------


def execute(db_url: str, sql: str, rows: list[tuple]) -> None:
    with psycopg.connect(db_url) as conn:
        conn.cursor().executemany(sql, rows)


def add_accounts(db_url: str, *ids: str, threshold: Decimal = Decimal("10")) -> None:
    execute(
        db_url,
        "INSERT INTO billing.accounts (id, name, low_balance_threshold) VALUES (%s, %s, %s)",
        [(i, f"Account {i}", threshold) for i in ids],
    )


def add_deployment(db_url: str, deployment_id: str, account_id: str, namespace: str | None = None) -> None:
    execute(
        db_url,
        "INSERT INTO billing.deployments (id, account_id, namespace, name) VALUES (%s, %s, %s, %s)",
        [(deployment_id, account_id, namespace or f"ns-{account_id}", deployment_id)],
    )


def add_price(
    db_url: str,
    pid: str,
    resource: str,
    unit: str,
    price: str,
    *,
    basis: str = "usage",
    machine_type: str | None = None,
    start: datetime = datetime(2025, 1, 1, tzinfo=UTC),
    end: datetime | None = None,
) -> None:
    execute(
        db_url,
        "INSERT INTO billing.pricing_configs (id, resource, machine_type, unit, unit_price, basis, "
        "effective_from, effective_to) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        [(pid, resource, machine_type, unit, Decimal(price), basis, start, end)],
    )


STANDARD_PRICES = [
    ("cpu", "core_hour", "0.040000", "max_request_usage"),
    ("memory", "gib_hour", "0.005000", "usage"),
    ("gpu", "gpu_hour", "1.500000", "usage"),
    ("storage", "gib_hour", "0.000200", "usage"),
    ("network_egress", "gib", "0.080000", "usage"),
]


def add_standard_prices(db_url: str, machine_prices: dict[str, str] | None = None) -> None:
    for resource, unit, price, basis in STANDARD_PRICES:
        add_price(db_url, f"p-{resource}", resource, unit, price, basis=basis)
    for machine_type, price in (machine_prices or {}).items():
        add_price(db_url, f"p-machine-{machine_type}", "machine", "machine_hour", price, machine_type=machine_type)


def add_container_hour(
    db_url: str,
    hour: datetime,
    pod: str,
    *,
    deployment_id: str | None,
    account_id: str | None,
    node: str,
    container: str = "app",
    namespace: str = "ns",
    cpu_usage: str = "0",
    cpu_request: str = "0",
    mem_usage: str = "0",
    mem_request: str = "0",
    gpu: str = "0",
    minutes: int = 60,
) -> None:
    execute(
        db_url,
        "INSERT INTO billing.metric_container_hours (hour, namespace, pod, container, node, deployment_id, "
        "account_id, attribution, present_minutes, cpu_usage_core_hours, cpu_request_core_hours, "
        "memory_usage_gib_hours, memory_request_gib_hours, gpu_request_hours) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        [
            (
                hour,
                namespace,
                pod,
                container,
                node,
                deployment_id,
                account_id,
                "label" if deployment_id else "unattributed",
                minutes,
                Decimal(cpu_usage),
                Decimal(cpu_request),
                Decimal(mem_usage),
                Decimal(mem_request),
                Decimal(gpu),
            )
        ],
    )


def add_network_hour(
    db_url: str,
    hour: datetime,
    pod: str,
    *,
    deployment_id: str,
    account_id: str,
    node: str,
    egress_gib: str,
    namespace: str = "ns",
) -> None:
    execute(
        db_url,
        "INSERT INTO billing.metric_pod_network_hours (hour, namespace, pod, node, deployment_id, account_id, "
        "attribution, egress_gib) VALUES (%s, %s, %s, %s, %s, %s, 'label', %s)",
        [(hour, namespace, pod, node, deployment_id, account_id, Decimal(egress_gib))],
    )


def add_volume_hour(
    db_url: str, hour: datetime, pvc: str, *, deployment_id: str, account_id: str, gib_hours: str, namespace: str = "ns"
) -> None:
    execute(
        db_url,
        "INSERT INTO billing.metric_volume_hours (hour, namespace, persistentvolumeclaim, deployment_id, "
        "account_id, attribution, requested_bytes, storage_gib_hours) VALUES (%s, %s, %s, %s, %s, 'label', %s, %s)",
        [(hour, namespace, pvc, deployment_id, account_id, Decimal(gib_hours) * 2**30, Decimal(gib_hours))],
    )


def mark_hours(db_url: str, start: datetime, hours: int, complete: bool = True) -> None:
    execute(
        db_url,
        "INSERT INTO billing.metric_hours (hour, complete) VALUES (%s, %s) "
        "ON CONFLICT (hour) DO UPDATE SET complete = excluded.complete",
        [(start + timedelta(hours=i), complete) for i in range(hours)],
    )


def add_rental(
    db_url: str,
    rental_id: str,
    account_id: str,
    machine_type: str,
    node: str,
    started: datetime,
    ended: datetime | None,
) -> None:
    """A machine_usages row and its hour slices (as the ingestion writes them)."""
    execute(
        db_url,
        "INSERT INTO billing.machine_usages (id, account_id, machine_id, machine_type, node_name, started_at, "
        "ended_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        [(rental_id, account_id, f"m-{rental_id}", machine_type, node, started, ended)],
    )
    assert ended is not None, "only ended rentals are sliced by this helper"
    rows = []
    hour = started.replace(minute=0, second=0, microsecond=0)
    while hour < ended:
        lo, hi = max(started, hour), min(ended, hour + timedelta(hours=1))
        seconds = Decimal(int((hi - lo).total_seconds()))
        rows.append(
            (
                hour,
                rental_id,
                account_id,
                f"m-{rental_id}",
                machine_type,
                node,
                seconds,
                seconds / Decimal(3600),
                False,
                started,
            )
        )
        hour += timedelta(hours=1)
    execute(
        db_url,
        "INSERT INTO billing.machine_rental_hours (hour, machine_usage_id, account_id, machine_id, machine_type, "
        "node_name, rented_seconds, machine_hours, is_ongoing, source_updated_at) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        rows,
    )
