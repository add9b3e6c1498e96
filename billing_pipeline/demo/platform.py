"""The demo platform: a few accounts, deployments, domains, prices and machine rentals.

Written idempotently (``ON CONFLICT DO NOTHING``), so the demo can be run again on the same
database. The demo day is 2026-11-24 (UTC).
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import psycopg

D = Decimal


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=timezone.utc)


DEMO_START = utc(2026, 11, 24, 0)
DEMO_END = utc(2026, 11, 25, 0)

# id, name, threshold, grace hours, volume policy, retention days, early idle deletion
ACCOUNTS = [
    ("acme", "Acme Robotics", D("50"), 72, "delete", 7, False),
    ("globex", "Globex Analytics", D("100"), 72, "retain", 7, False),
    ("initech", "Initech", D("20"), 24, "delete", 7, True),
]

# id, account, namespace, Kubernetes Deployment name
DEPLOYMENTS = [
    ("dep-acme-web", "acme", "acme", "web"),
    ("dep-acme-worker", "acme", "acme", "worker"),
    ("dep-globex-trainer", "globex", "globex", "trainer"),
    ("dep-initech-api", "initech", "initech", "api"),
]

DOMAINS = [
    ("www.acme.example", "dep-acme-web"),
    ("api.initech.example", "dep-initech-api"),
]

EFFECTIVE = utc(2026, 1, 1)
PRICE_CHANGE = utc(2026, 11, 24, 14)  # CPU gets dearer at 14:00 on the demo day

# id, resource, machine type, unit, unit price, basis, effective from, effective to
PRICES = [
    ("cpu-2026", "cpu", None, "core_hour", D("0.040"), "max_request_usage", EFFECTIVE, PRICE_CHANGE),
    ("cpu-2026-11", "cpu", None, "core_hour", D("0.045"), "max_request_usage", PRICE_CHANGE, None),
    ("memory-2026", "memory", None, "gib_hour", D("0.005"), "max_request_usage", EFFECTIVE, None),
    ("gpu-2026", "gpu", None, "gpu_hour", D("1.200"), "usage", EFFECTIVE, None),
    ("storage-2026", "storage", None, "gib_hour", D("0.0002"), "usage", EFFECTIVE, None),
    ("egress-2026", "network_egress", None, "gib", D("0.050"), "usage", EFFECTIVE, None),
    ("machine-standard-8", "machine", "standard-8", "machine_hour", D("0.300"), "usage", EFFECTIVE, None),
    ("machine-gpu-a100", "machine", "gpu-a100", "machine_hour", D("2.500"), "usage", EFFECTIVE, None),
]

# id, account, machine id, machine type, node, started, ended (None: still rented)
RENTALS = [
    ("rent-globex-a100", "globex", "m-a100-1", "gpu-a100", "node-gpu-1", utc(2026, 11, 24, 10, 20), None),
    ("rent-acme-std", "acme", "m-std-2", "standard-8", "node-std-2", utc(2026, 11, 24, 0), utc(2026, 11, 24, 12, 5)),
]

# Opening credit: (account, amount, payment reference)
OPENING_TOPUPS = [
    ("acme", D("500.00"), "demo-opening-acme"),
    ("globex", D("150.00"), "demo-opening-globex"),
    ("initech", D("25.00"), "demo-opening-initech"),
]


def load_platform(conn: psycopg.Connection) -> None:
    """Insert the demo platform rows that are not there yet."""
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO billing.accounts (id, name, email, notify_email, low_balance_threshold, grace_period_hours, "
            "volume_policy, volume_retention_days, early_idle_deletion) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
            [(a, n, f"billing@{a}.example", f"ops@{a}.example", t, g, v, r, e) for a, n, t, g, v, r, e in ACCOUNTS],
        )
        cur.executemany(
            "INSERT INTO billing.deployments (id, account_id, namespace, name, created_at) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
            [(*d, utc(2026, 11, 1)) for d in DEPLOYMENTS],
        )
        cur.executemany(
            "INSERT INTO billing.domains (hostname, deployment_id) VALUES (%s, %s) ON CONFLICT (hostname) DO NOTHING",
            DOMAINS,
        )
        cur.executemany(
            "INSERT INTO billing.pricing_configs (id, resource, machine_type, unit, unit_price, basis, "
            "effective_from, effective_to) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
            PRICES,
        )
        cur.executemany(
            "INSERT INTO billing.machine_usages (id, account_id, machine_id, machine_type, node_name, started_at, "
            "ended_at) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
            RENTALS,
        )
