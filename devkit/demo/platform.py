"""The demo platform: accounts, deployments and their pods, domains, prices and machine rentals.

One synthetic cluster description (``devkit.synthetic``) is the single source of
both the platform rows and the Prometheus series, so the demo's bill can be checked against
what was described. Everything is written idempotently (``ON CONFLICT DO NOTHING``).

The demo window is 2026-11-24 10:00-16:00 UTC. It shows both measurement streams:

* acme's ``web`` pods run on a shared node: charged by consumption. Its legacy ``worker`` (no
  deployment label: attributed through the owner chain) runs on ``node-std-2``, which acme
  rents until 12:05: covered by the rental until then, charged by consumption after.
* globex rents the GPU node ``node-gpu-1`` from 10:20 on (still rented) and trains on it:
  the rental is charged, the consumption on its own rented node is covered.
* initech's ``api`` (with a 20 GiB volume) runs on ``node-std-2`` too: while acme rents that
  node, its consumption is an exception row for a person to look at.
* a pod of a deployment the platform does not know stays unattributed (reported, not billed).
* CPU gets dearer at 14:00.
* hooli, a trial account with promotional credits only, has them expire at 13:00 and enters grace.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg

from devkit.synthetic import GIB, MIB, Account, Cluster, Container, Deployment, Pod, Pvc, Rental, write_platform_rows

D = Decimal


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


DEMO_START = utc(2026, 11, 24, 10)
# The demo's first billable hour: BILLING_FIRST_HOUR for every process on the demo's instance
# (scripts/ui, .billing/demo.env), so the UI's partitions start where the demo's data does.
DEMO_FIRST_HOUR = DEMO_START
DEMO_END = utc(2026, 11, 24, 16)
PRICE_CHANGE = utc(2026, 11, 24, 14)
EFFECTIVE = utc(2026, 1, 1)
# Minutes after DEMO_START in which dep-acme-web's probe fails: 12:10 to 12:40 UTC.
PROBE_OUTAGE = ((130, 160),)


def _account(id_: str, name: str, threshold: str, **extra) -> Account:
    return Account(
        id_,
        name,
        f"billing@{id_}.example",
        extra={"low_balance_threshold": D(threshold), "notify_email": f"ops@{id_}.example", **extra},
    )


def _web_container(cores: float, memory_mib: int, request_cores: float, request_mib: int, gpus: int = 0) -> Container:
    return Container(
        "app",
        cpu_cores=cores,
        memory_bytes=memory_mib * MIB,
        cpu_request=request_cores,
        memory_request=request_mib * MIB,
        gpu_request=gpus,
    )


DEMO_CLUSTER = Cluster(
    start=DEMO_START,
    minutes=int((DEMO_END - DEMO_START).total_seconds() // 60),
    accounts=(
        _account("acme", "Acme Robotics", "50", grace_period_hours=72, volume_policy="delete"),
        _account("globex", "Globex Analytics", "100", volume_policy="retain", volume_retention_days=7),
        _account("initech", "Initech", "20", grace_period_hours=24, early_idle_deletion=True),
        # A trial living on promotional credits alone: they expire inside the window (PROMOTIONAL_GRANTS).
        _account("hooli", "Hooli Labs", "5", grace_period_hours=48),
    ),
    deployments=(
        # Every registered deployment is probed (blackbox probe_success), so availability is measured;
        # acme's web front end is down for half an hour: below 95% over the demo's hours, it earns
        # an SLA credit when the demo closes November (docs/rules/month-end.md).
        Deployment("dep-acme-web", "acme", "acme", "web", probed=True, probe_down=PROBE_OUTAGE),
        Deployment("dep-acme-worker", "acme", "acme", "worker", labelled=False, probed=True),
        Deployment("dep-globex-trainer", "globex", "globex", "trainer", probed=True),
        Deployment("dep-initech-api", "initech", "initech", "api", probed=True),
        Deployment("dep-unknown", "nobody", "scratch", "stray", registered=False),
    ),
    pods=(
        Pod(
            "web-7d9f-a1",
            "dep-acme-web",
            "node-shared-1",
            (_web_container(0.5, 512, 0.25, 1024),),
            egress_bytes_per_minute=8 * MIB,
        ),
        Pod(
            "web-7d9f-b2",
            "dep-acme-web",
            "node-shared-1",
            (_web_container(0.5, 512, 0.25, 1024),),
            egress_bytes_per_minute=8 * MIB,
        ),
        Pod("worker-5c6d-c3", "dep-acme-worker", "node-std-2", (_web_container(1.5, 2048, 1.0, 2048),)),
        Pod(
            "trainer-0",
            "dep-globex-trainer",
            "node-gpu-1",
            (_web_container(3.5, 24 * 1024, 4.0, 16 * 1024, gpus=1),),
            start_minute=20,
        ),
        Pod(
            "api-6b7c-d4",
            "dep-initech-api",
            "node-std-2",
            (_web_container(2.0, 4096, 1.0, 4096),),
            egress_bytes_per_minute=2 * MIB,
        ),
        Pod("stray-1", "dep-unknown", "node-shared-1", (_web_container(0.2, 256, 0.1, 256),)),
    ),
    pvcs=(Pvc("initech", "data-api-0", 20 * GIB, deployment_id="dep-initech-api"),),
    rentals=(
        Rental(
            "rent-globex-a100",
            "globex",
            "m-a100-1",
            "gpu-a100",
            "node-gpu-1",
            utc(2026, 11, 24, 10, 20),
            None,
            updated_at=utc(2026, 11, 24, 10, 20),
        ),
        Rental(
            "rent-acme-std",
            "acme",
            "m-std-2",
            "standard-8",
            "node-std-2",
            utc(2026, 11, 24, 0),
            utc(2026, 11, 24, 12, 5),
            updated_at=utc(2026, 11, 24, 12, 5),
        ),
    ),
)

DOMAINS = [
    ("www.acme.example", "dep-acme-web"),
    ("api.initech.example", "dep-initech-api"),
]

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

# Opening credit: (account, amount, payment reference). initech starts just above its warning
# threshold of 20, so the demo's usage crosses it and the low-balance warning goes out.
# The opening credit is paid before the usage it pays for: the ledger stamps it one hour before
# the demo's first hour, so the statement, the invoice and `billing status` of November tell one
# story (opening 0, top-up, usage, closing = the balance), whatever the date the demo runs on.
OPENING_CREDIT_AT = DEMO_START - timedelta(hours=1)
OPENING_TOPUPS = [
    ("acme", D("500.00"), "demo-opening-acme"),
    ("globex", D("150.00"), "demo-opening-globex"),
    ("initech", D("20.50"), "demo-opening-initech"),
]

# Promotional grants: (account, amount, reference, expires_at), posted with the opening credit.
# hooli's trial credits expire at 13:00, inside the demo's window: the cycle's grant expiry
# (at its clock, 16:00) takes what is left, the balance reaches zero, and the lifecycle puts hooli
# into grace saying why ("promotional credits expired"; `billing status hooli`).
PROMOTIONAL_GRANTS = [
    ("hooli", D("5.00"), "demo-trial-hooli", utc(2026, 11, 24, 13)),
]


def load_platform(conn: psycopg.Connection) -> None:
    """Insert the demo platform rows that are not there yet."""
    with conn.transaction(), conn.cursor() as cur:
        write_platform_rows(conn, DEMO_CLUSTER)
        cur.executemany(
            "INSERT INTO billing.domains (hostname, deployment_id) VALUES (%s, %s) ON CONFLICT (hostname) DO NOTHING",
            DOMAINS,
        )
        cur.executemany(
            "INSERT INTO billing.pricing_configs (id, resource, machine_type, unit, unit_price, basis, "
            "effective_from, effective_to) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
            PRICES,
        )
