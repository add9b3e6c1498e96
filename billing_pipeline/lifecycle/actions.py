"""Tracking each cluster action's state, so that status never shows as done what is not.

``tracked(lc, ...)`` wraps one action (routing off for a deployment, a cleanup, a snapshot ...):
it is ``pending`` from the moment it is decided, ``failed`` with the error when a call fails (or
no cluster is configured), ``done`` only when every call of it succeeded. An action can also
stay pending on purpose (``handle.waiting(note)``: a snapshot not ready yet). Failed and pending
actions are retried by every run of ``grace_period_job``, at the latest every
``RETRY_EVERY_MINUTES`` (``grace_deadline_schedule``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from billing_pipeline.core.errors import BillingError
from billing_pipeline.lifecycle import store
from billing_pipeline.lifecycle.store import fmt_time

RETRY_EVERY_MINUTES = 15


class _Handle:
    def __init__(self) -> None:
        self.note: str | None = None

    def waiting(self, note: str) -> None:
        """Leave the action pending (not failed, not done) with ``note`` saying what it waits for."""
        self.note = note


@contextmanager
def tracked(
    lc: Any, account_id: str, key: str, action: str, deployment_id: str | None, target: dict
) -> Iterator[_Handle]:
    handle = _Handle()
    if lc.dry_run:
        yield handle
        return
    store.begin_action(
        lc.conn, key=key, account_id=account_id, deployment_id=deployment_id, action=action, target=target, now=lc.now
    )
    try:
        yield handle
    except BillingError as exc:
        store.fail_action(lc.conn, key=key, error=str(exc), status=getattr(exc, "status", None), now=lc.now)
        raise
    if handle.note is not None:
        store.fail_action(lc.conn, key=key, error=handle.note, status=None, now=lc.now, state="pending")
    else:
        store.finish_action(lc.conn, key=key, now=lc.now)


def not_done_text(row: dict | None, what: str) -> str:
    """ "routing not yet disabled: HTTP 403 on Ingress ns/x at 17:00 UTC, retried every 15 minutes"."""
    retry = f"retried every {RETRY_EVERY_MINUTES} minutes"
    if row is None:
        return f"{what}: the lifecycle has not acted on the cluster yet ({retry})"
    if row["last_error"] is None:
        return f"{what}: pending since {fmt_time(row['last_attempt_at'] or row.get('updated_at'))} ({retry})"
    when = fmt_time(row["last_attempt_at"])
    return f"{what}: {row['last_error'].rstrip('.')} (at {when}, {retry})"
