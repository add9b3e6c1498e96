"""Cleanups (one per deployment), the objects each one deletes, expiry snapshots, idle usage."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg

__all__ = [
    "cancel_retained_volumes",
    "cleaned_pvcs",
    "cleanup_volumes_done",
    "cleanup_workload_done",
    "cleanups_of",
    "complete_hours",
    "idle_usage",
    "mark_object",
    "mark_snapshot",
    "object_failed",
    "open_cleanup",
    "open_cleanups",
    "pending_objects",
    "plan_object",
    "plan_snapshot",
    "snapshot_of",
    "snapshots_due",
    "snapshots_of",
]


def open_cleanup(
    conn: psycopg.Connection,
    *,
    deployment_id: str,
    account_id: str,
    namespace: str,
    name: str,
    reason: str,
    episode: int,
    volume_policy: str,
    volumes_delete_after: datetime,
    now: datetime,
) -> None:
    conn.execute(
        "INSERT INTO billing.lifecycle_cleanups (deployment_id, account_id, namespace, name, reason, episode, "
        "volume_policy, volumes_delete_after, started_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (deployment_id) DO NOTHING",
        (deployment_id, account_id, namespace, name, reason, episode, volume_policy, volumes_delete_after, now),
    )


def open_cleanups(conn: psycopg.Connection, account_id: str) -> list[tuple]:
    """(deployment_id, namespace, name, volumes_delete_after, workload_done_at, owner, deployment namespace,
    volume_policy) of every cleanup not finished nor cancelled."""
    return conn.execute(
        "SELECT c.deployment_id, c.namespace, c.name, c.volumes_delete_after, c.workload_done_at, d.account_id, "
        "d.namespace, c.volume_policy FROM billing.lifecycle_cleanups c JOIN billing.deployments d "
        "ON d.id = c.deployment_id WHERE c.account_id = %s AND c.volumes_done_at IS NULL AND c.cancelled_at IS NULL "
        "ORDER BY c.started_at, c.deployment_id",
        (account_id,),
    ).fetchall()


def cleanups_of(conn: psycopg.Connection, account_id: str) -> dict[str, dict[str, Any]]:
    cur = conn.execute(
        "SELECT deployment_id, reason, started_at, workload_done_at, volumes_delete_after, volumes_done_at, "
        "cancelled_at, volume_policy FROM billing.lifecycle_cleanups WHERE account_id = %s",
        (account_id,),
    )
    cols = [c.name for c in cur.description]
    return {r[0]: dict(zip(cols, r)) for r in cur.fetchall()}


def cancel_retained_volumes(
    conn: psycopg.Connection, account_id: str, now: datetime, reason: str, policies: list[str]
) -> list[str]:
    """Cancel the volume deletions still waiting out their retention under one of ``policies``."""
    return [
        r[0]
        for r in conn.execute(
            "UPDATE billing.lifecycle_cleanups SET cancelled_at = %s, cancel_reason = %s "
            "WHERE account_id = %s AND volumes_done_at IS NULL AND cancelled_at IS NULL AND volume_policy = ANY(%s) "
            "AND workload_done_at IS NOT NULL AND volumes_delete_after > %s RETURNING deployment_id",
            (now, reason, account_id, policies, now),
        ).fetchall()
    ]


def plan_object(
    conn: psycopg.Connection,
    *,
    deployment_id: str,
    kind: str,
    namespace: str,
    name: str,
    found_by: str,
    uid: str | None,
    size_bytes: Decimal | None,
    now: datetime,
) -> bool:
    return (
        conn.execute(
            "INSERT INTO billing.lifecycle_cleanup_objects (deployment_id, kind, namespace, name, found_by, uid, "
            "size_bytes, planned_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
            (deployment_id, kind, namespace, name, found_by, uid, size_bytes, now),
        ).fetchone()
        is not None
    )


def pending_objects(conn: psycopg.Connection, deployment_id: str, kinds) -> list[tuple]:
    """(kind, namespace, name, found_by, uid, size_bytes) of the objects not deleted yet."""
    return conn.execute(
        "SELECT kind, namespace, name, found_by, uid, size_bytes FROM billing.lifecycle_cleanup_objects "
        "WHERE deployment_id = %s AND status = 'pending' AND kind = ANY(%s)",
        (deployment_id, list(kinds)),
    ).fetchall()


def mark_object(
    conn: psycopg.Connection, deployment_id: str, kind: str, ns: str, name: str, status: str, now: datetime
) -> None:
    conn.execute(
        "UPDATE billing.lifecycle_cleanup_objects SET status = %s, done_at = %s, attempts = attempts + 1, "
        "last_error = NULL WHERE deployment_id = %s AND kind = %s AND namespace = %s AND name = %s",
        (status, now, deployment_id, kind, ns, name),
    )


def object_failed(conn: psycopg.Connection, deployment_id: str, kind: str, ns: str, name: str, error: str) -> None:
    conn.execute(
        "UPDATE billing.lifecycle_cleanup_objects SET attempts = attempts + 1, last_error = %s "
        "WHERE deployment_id = %s AND kind = %s AND namespace = %s AND name = %s",
        (error, deployment_id, kind, ns, name),
    )


def cleanup_workload_done(conn: psycopg.Connection, deployment_id: str, now: datetime) -> None:
    conn.execute(
        "UPDATE billing.lifecycle_cleanups SET workload_done_at = coalesce(workload_done_at, %s), "
        "domains_released_at = coalesce(domains_released_at, %s) WHERE deployment_id = %s",
        (now, now, deployment_id),
    )


def cleanup_volumes_done(conn: psycopg.Connection, deployment_id: str, now: datetime) -> None:
    conn.execute(
        "UPDATE billing.lifecycle_cleanups SET volumes_done_at = %s "
        "WHERE deployment_id = %s AND volumes_done_at IS NULL",
        (now, deployment_id),
    )


def cleaned_pvcs(conn: psycopg.Connection, account_id: str) -> dict[tuple[str, str, str], dict[str, Any]]:
    cur = conn.execute(
        "SELECT o.namespace, o.name, o.deployment_id, o.status, o.size_bytes, o.done_at, o.last_error "
        "FROM billing.lifecycle_cleanup_objects o JOIN billing.lifecycle_cleanups c USING (deployment_id) "
        "WHERE c.account_id = %s AND o.kind = 'PersistentVolumeClaim'",
        (account_id,),
    )
    cols = [c.name for c in cur.description]
    return {(r[0], r[1], r[2]): dict(zip(cols, r)) for r in cur.fetchall()}


def plan_snapshot(
    conn: psycopg.Connection,
    *,
    namespace: str,
    snapshot_name: str,
    pvc: str,
    deployment_id: str,
    account_id: str,
    snapshot_class: str | None,
    size_bytes,
    now: datetime,
) -> None:
    conn.execute(
        "INSERT INTO billing.lifecycle_snapshots (namespace, snapshot_name, pvc, deployment_id, account_id, "
        "snapshot_class, size_bytes, status, planned_at) VALUES (%s, %s, %s, %s, %s, %s, %s, 'planned', %s) "
        "ON CONFLICT DO NOTHING",
        (namespace, snapshot_name, pvc, deployment_id, account_id, snapshot_class, size_bytes, now),
    )


def snapshot_of(conn: psycopg.Connection, namespace: str, snapshot_name: str) -> dict[str, Any] | None:
    cur = conn.execute(
        "SELECT * FROM billing.lifecycle_snapshots WHERE namespace = %s AND snapshot_name = %s",
        (namespace, snapshot_name),
    )
    row = cur.fetchone()
    return dict(zip([c.name for c in cur.description], row)) if row else None


def mark_snapshot(
    conn: psycopg.Connection,
    namespace: str,
    snapshot_name: str,
    status: str,
    now: datetime,
    *,
    error: str | None = None,
    delete_after: datetime | None = None,
) -> None:
    column = {"planned": None, "created": "created_at", "ready": "ready_at", "failed": None, "deleted": "deleted_at"}[
        status
    ]
    stamp = f", {column} = coalesce({column}, %(now)s)" if column else ""
    conn.execute(
        f"UPDATE billing.lifecycle_snapshots SET status = %(status)s, last_error = %(error)s{stamp}, "
        "delete_after = coalesce(%(delete_after)s, delete_after) WHERE namespace = %(ns)s AND snapshot_name = %(name)s",
        {
            "status": status,
            "now": now,
            "error": error,
            "delete_after": delete_after,
            "ns": namespace,
            "name": snapshot_name,
        },
    )


def snapshots_of(conn: psycopg.Connection, account_id: str) -> dict[tuple[str, str, str], dict[str, Any]]:
    cur = conn.execute("SELECT * FROM billing.lifecycle_snapshots WHERE account_id = %s", (account_id,))
    cols = [c.name for c in cur.description]
    return {(r[0], r[2], r[3]): dict(zip(cols, r)) for r in cur.fetchall()}  # (namespace, pvc, deployment)


def snapshots_due(conn: psycopg.Connection, account_id: str, now: datetime) -> list[dict[str, Any]]:
    cur = conn.execute(
        "SELECT * FROM billing.lifecycle_snapshots WHERE account_id = %s AND status = 'ready' "
        "AND delete_after <= %s ORDER BY namespace, snapshot_name",
        (account_id, now),
    )
    cols = [c.name for c in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def complete_hours(conn: psycopg.Connection, start: datetime, end: datetime) -> int:
    return conn.execute(
        "SELECT count(*) FROM billing.metric_hours WHERE hour >= %s AND hour < %s AND complete", (start, end)
    ).fetchone()[0]


def idle_usage(conn: psycopg.Connection, account_id: str, start: datetime, end: datetime) -> list[tuple]:
    """(id, account_id, namespace, name, cpu core-hours, egress GiB) over [start, end) of each live deployment
    of the account that existed the whole window and is not being cleaned up."""
    return conn.execute(
        """
        SELECT d.id, d.account_id, d.namespace, d.name,
               coalesce((SELECT sum(cpu_usage_core_hours) FROM billing.metric_container_hours m
                         WHERE m.deployment_id = d.id AND m.hour >= %(s)s AND m.hour < %(e)s), 0),
               coalesce((SELECT sum(egress_gib) FROM billing.metric_pod_network_hours n
                         WHERE n.deployment_id = d.id AND n.hour >= %(s)s AND n.hour < %(e)s), 0)
        FROM billing.deployments d
        WHERE d.account_id = %(a)s AND d.deleted_at IS NULL AND d.created_at <= %(s)s
          AND NOT EXISTS (SELECT 1 FROM billing.lifecycle_cleanups c WHERE c.deployment_id = d.id)
        ORDER BY d.id
        """,
        {"s": start, "e": end, "a": account_id},
    ).fetchall()
