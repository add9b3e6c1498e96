"""Writing a synthetic cluster's platform rows into the billing database.

``write_platform_rows(conn, cluster)`` inserts ``billing.accounts``, ``billing.deployments``
(registered deployments only: an unregistered one is what "unknown deployment" means) and
``billing.machine_usages`` (rentals as given, bad rows included), in the caller's transaction.
Rows already present (same primary key) are left as they are, so it can run twice.
Deployments get ``created_at`` = the cluster start, so they are alive during every hour.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from devkit.synthetic.model import Cluster

_ACCOUNT_COLUMNS = {
    "low_balance_threshold",
    "grace_period_hours",
    "volume_policy",
    "volume_retention_days",
    "early_idle_deletion",
    "auto_topup_enabled",
    "auto_topup_threshold",
    "auto_topup_amount",
    "auto_topup_monthly_limit",
    "stripe_customer_id",
    "stripe_payment_method_id",
    "notify_email",
    "notify_webhook_url",
}


def write_platform_rows(conn: psycopg.Connection, cluster: Cluster) -> dict[str, int]:
    """Insert the cluster's accounts, deployments and rentals; return counts inserted."""
    counts = {"accounts": 0, "deployments": 0, "machine_usages": 0}
    with conn.cursor() as cur:
        for a in cluster.accounts:
            unknown = set(a.extra) - _ACCOUNT_COLUMNS
            if unknown:
                raise ValueError(f"account {a.id}: unknown columns {sorted(unknown)}")
            columns = ["id", "name", "email", *a.extra]
            values = [a.id, a.name, a.email, *a.extra.values()]
            cur.execute(
                sql.SQL("INSERT INTO billing.accounts ({}) VALUES ({}) ON CONFLICT (id) DO NOTHING").format(
                    sql.SQL(", ").join(map(sql.Identifier, columns)),
                    sql.SQL(", ").join(sql.Placeholder() * len(values)),
                ),
                values,
            )
            counts["accounts"] += cur.rowcount
        for d in cluster.deployments:
            if not d.registered:
                continue
            cur.execute(
                "INSERT INTO billing.deployments (id, account_id, namespace, name, created_at) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
                (d.id, d.account_id, d.namespace, d.name, cluster.start),
            )
            counts["deployments"] += cur.rowcount
        for r in cluster.rentals:
            cur.execute(
                "INSERT INTO billing.machine_usages "
                "(id, account_id, machine_id, machine_type, node_name, started_at, ended_at, updated_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, coalesce(%s, now())) ON CONFLICT (id) DO NOTHING",
                (r.id, r.account_id, r.machine_id, r.machine_type, r.node_name, r.started_at, r.ended_at, r.updated_at),
            )
            counts["machine_usages"] += cur.rowcount
    return counts
