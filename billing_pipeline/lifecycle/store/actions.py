"""The current state of each cluster action: ``pending``, ``done`` or ``failed`` with its error.

``lifecycle_events`` is the history; this table is the latest word per action, keyed by what the
action is about (``routing:<deployment>``, ``scale:<deployment>``, ``cleanup:<deployment>``,
``snapshot:<namespace>/<pvc>``). A new ``action`` under the same key (routing off, then restore)
starts again from ``pending``; the same action keeps its state until it is done, so an error
stays visible until a retry succeeds.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import psycopg

__all__ = ["actions_of", "begin_action", "fail_action", "finish_action"]


def begin_action(
    conn: psycopg.Connection,
    *,
    key: str,
    account_id: str,
    deployment_id: str | None,
    action: str,
    target: dict,
    now: datetime,
    note: str | None = None,
) -> None:
    conn.execute(
        "INSERT INTO billing.lifecycle_actions (action_key, account_id, deployment_id, action, target, state, "
        "last_error, updated_at) VALUES (%s, %s, %s, %s, %s, 'pending', %s, %s) "
        "ON CONFLICT (action_key) DO UPDATE SET action = excluded.action, target = excluded.target, "
        "state = 'pending', attempts = 0, last_error = excluded.last_error, last_status = NULL, "
        "last_attempt_at = NULL, done_at = NULL, updated_at = excluded.updated_at "
        "WHERE lifecycle_actions.action <> excluded.action",
        (key, account_id, deployment_id, action, json.dumps(target, default=str), note, now),
    )


def fail_action(
    conn: psycopg.Connection, *, key: str, error: str, status: int | None, now: datetime, state: str = "failed"
) -> None:
    """Record an attempt that did not complete: ``failed`` (an error), or ``pending`` (waiting)."""
    conn.execute(
        "UPDATE billing.lifecycle_actions SET state = %s, attempts = attempts + 1, last_error = %s, "
        "last_status = %s, last_attempt_at = %s, updated_at = %s WHERE action_key = %s",
        (state, error, status, now, now, key),
    )


def finish_action(conn: psycopg.Connection, *, key: str, now: datetime) -> None:
    conn.execute(
        "UPDATE billing.lifecycle_actions SET state = 'done', attempts = attempts + 1, last_error = NULL, "
        "last_status = NULL, last_attempt_at = %s, done_at = coalesce(done_at, %s), updated_at = %s "
        "WHERE action_key = %s AND state <> 'done'",
        (now, now, now, key),
    )


def actions_of(conn: psycopg.Connection, account_id: str) -> dict[str, dict[str, Any]]:
    cur = conn.execute(
        "SELECT action_key, deployment_id, action, target, state, attempts, last_error, last_status, "
        "last_attempt_at, done_at FROM billing.lifecycle_actions WHERE account_id = %s ORDER BY action_key",
        (account_id,),
    )
    cols = [c.name for c in cur.description]
    return {r[0]: dict(zip(cols, r)) for r in cur.fetchall()}
