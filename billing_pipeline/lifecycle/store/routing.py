"""Ingress specs saved while routing is suspended; replica counts saved while scaled to zero."""

from __future__ import annotations

import json
from datetime import datetime

import psycopg

__all__ = ["mark_ingresses", "mark_scale", "save_ingress", "save_scale", "saved_ingresses", "saved_scales"]


def save_ingress(
    conn: psycopg.Connection,
    *,
    namespace: str,
    name: str,
    account_id: str,
    deployment_id: str,
    episode: int,
    spec: dict,
    spec_text: str,
    service: str,
    now: datetime,
) -> tuple[str, str]:
    """Save the Ingress spec exactly (``spec_text``, as the API server returned it), unless a row
    not yet restored holds the originals already. Returns (the saved original text, its status)."""
    conn.execute(
        "INSERT INTO billing.lifecycle_saved_ingresses (namespace, name, account_id, deployment_id, episode, "
        "has_rules, rules, has_default_backend, default_backend, spec_text, suspension_service, status, saved_at) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'saved', %s) "
        "ON CONFLICT (namespace, name) DO UPDATE SET account_id = excluded.account_id, "
        "deployment_id = excluded.deployment_id, episode = excluded.episode, has_rules = excluded.has_rules, "
        "rules = excluded.rules, has_default_backend = excluded.has_default_backend, "
        "default_backend = excluded.default_backend, spec_text = excluded.spec_text, "
        "suspension_service = excluded.suspension_service, status = 'saved', saved_at = excluded.saved_at, "
        "disabled_at = NULL, restored_at = NULL "
        "WHERE lifecycle_saved_ingresses.status IN ('restored', 'gone')",
        (
            namespace,
            name,
            account_id,
            deployment_id,
            episode,
            "rules" in spec,
            json.dumps(spec.get("rules")),
            "defaultBackend" in spec,
            json.dumps(spec.get("defaultBackend")),
            spec_text,
            service,
            now,
        ),
    )
    return conn.execute(
        "SELECT spec_text, status FROM billing.lifecycle_saved_ingresses WHERE namespace = %s AND name = %s",
        (namespace, name),
    ).fetchone()


def saved_ingresses(conn: psycopg.Connection, account_id: str, statuses=("saved", "disabled")) -> list[dict]:
    cur = conn.execute(
        "SELECT namespace, name, deployment_id, episode, spec_text, suspension_service, status, disabled_at, "
        "has_rules, rules, has_default_backend, default_backend "
        "FROM billing.lifecycle_saved_ingresses WHERE account_id = %s AND status = ANY(%s) "
        "ORDER BY deployment_id, namespace, name",
        (account_id, list(statuses)),
    )
    cols = [c.name for c in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def mark_ingresses(conn: psycopg.Connection, keys: list[tuple[str, str]], status: str, now: datetime) -> None:
    column = {"disabled": "disabled_at", "restored": "restored_at", "gone": "restored_at"}[status]
    for ns, name in keys:
        conn.execute(
            f"UPDATE billing.lifecycle_saved_ingresses SET status = %s, {column} = coalesce({column}, %s) "
            "WHERE namespace = %s AND name = %s AND status <> %s",
            (status, now, ns, name, status),
        )


def save_scale(
    conn: psycopg.Connection,
    *,
    namespace: str,
    name: str,
    account_id: str,
    deployment_id: str,
    episode: int,
    replicas: int,
    now: datetime,
) -> tuple[int, str]:
    """Save the replica count unless a row not yet restored holds the original; returns (replicas, status)."""
    conn.execute(
        "INSERT INTO billing.lifecycle_saved_scales (namespace, name, account_id, deployment_id, episode, replicas, "
        "status, saved_at) VALUES (%s, %s, %s, %s, %s, %s, 'saved', %s) ON CONFLICT (namespace, name) DO UPDATE "
        "SET account_id = excluded.account_id, deployment_id = excluded.deployment_id, episode = excluded.episode, "
        "replicas = excluded.replicas, status = 'saved', saved_at = excluded.saved_at, scaled_at = NULL, "
        "restored_at = NULL WHERE lifecycle_saved_scales.status IN ('restored', 'gone')",
        (namespace, name, account_id, deployment_id, episode, replicas, now),
    )
    return conn.execute(
        "SELECT replicas, status FROM billing.lifecycle_saved_scales WHERE namespace = %s AND name = %s",
        (namespace, name),
    ).fetchone()


def saved_scales(conn: psycopg.Connection, account_id: str, statuses=("saved", "scaled")) -> list[dict]:
    cur = conn.execute(
        "SELECT namespace, name, deployment_id, episode, replicas, status, scaled_at FROM "
        "billing.lifecycle_saved_scales WHERE account_id = %s AND status = ANY(%s) ORDER BY namespace, name",
        (account_id, list(statuses)),
    )
    cols = [c.name for c in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def mark_scale(conn: psycopg.Connection, namespace: str, name: str, status: str, now: datetime) -> None:
    column = {"scaled": "scaled_at", "restored": "restored_at", "gone": "restored_at"}[status]
    conn.execute(
        f"UPDATE billing.lifecycle_saved_scales SET status = %s, {column} = coalesce({column}, %s) "
        "WHERE namespace = %s AND name = %s AND status <> %s",
        (status, now, namespace, name, status),
    )
