"""Accounts, the persisted machine state, deployments, volumes, domains and events."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg

from billing_pipeline.lifecycle.machine import Snapshot, State

__all__ = [
    "Account",
    "Deployment",
    "Volume",
    "account_deployments",
    "account_ids",
    "account_namespaces",
    "account_rows",
    "count_events",
    "credits_expired_since",
    "domains_of",
    "events",
    "fmt_size",
    "fmt_time",
    "known_volumes",
    "latest_transition",
    "live_deployments",
    "load_account",
    "lock_snapshot",
    "move_domains",
    "previous_evaluation",
    "record_event",
    "release_domains",
    "retention_end",
    "save_snapshot",
    "settle_quiet_accounts",
    "shared_namespaces",
]


@dataclass(frozen=True)
class Account:
    id: str
    name: str
    balance: Decimal
    low_balance_threshold: Decimal
    grace_period_hours: int
    volume_policy: str
    volume_retention_days: int
    early_idle_deletion: bool
    scale_to_zero_after_hours: int | None = None
    last_entry_id: int | None = None  # the account's newest ledger entry (billing.credits)


@dataclass(frozen=True)
class Deployment:
    id: str
    account_id: str
    namespace: str
    name: str


@dataclass(frozen=True)
class Volume:
    namespace: str
    name: str
    deployment_id: str
    size_bytes: Decimal | None


def load_account(conn: psycopg.Connection, account_id: str) -> Account | None:
    row = conn.execute(
        "SELECT a.id, a.name, coalesce(c.balance, 0), a.low_balance_threshold, a.grace_period_hours, "
        "a.volume_policy, a.volume_retention_days, a.early_idle_deletion, a.scale_to_zero_after_hours, "
        "c.last_transaction_id "
        "FROM billing.accounts a LEFT JOIN billing.credits c ON c.account_id = a.id WHERE a.id = %s",
        (account_id,),
    ).fetchone()
    return Account(*row) if row else None


def account_ids(conn: psycopg.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT id FROM billing.accounts ORDER BY id").fetchall()]


def account_rows(conn: psycopg.Connection) -> list[tuple[str, str, Decimal, Decimal, str | None]]:
    """Every account as (id, name, balance, low-balance threshold, persisted state or None), by id."""
    return conn.execute(
        "SELECT a.id, a.name, coalesce(c.balance, 0), a.low_balance_threshold, l.state "
        "FROM billing.accounts a LEFT JOIN billing.credits c ON c.account_id = a.id "
        "LEFT JOIN billing.account_lifecycle l ON l.account_id = a.id ORDER BY a.id"
    ).fetchall()


# Accounts with nothing to do this hour: healthy, staying healthy (balance above the threshold,
# so the state machine makes no transition), and no lifecycle work open (a saved Ingress or
# scale to restore, a cleanup, a snapshot not yet deleted, a cluster action not done). Most
# accounts, every hour: one statement settles them instead of a dozen round trips each.
_QUIET = """
SELECT a.id, coalesce(c.balance, 0) AS balance, c.last_transaction_id AS last_entry_id
FROM billing.accounts a
LEFT JOIN billing.account_lifecycle l ON l.account_id = a.id
LEFT JOIN billing.credits c ON c.account_id = a.id
WHERE coalesce(l.state, 'healthy') = 'healthy'  -- no state yet: the machine starts healthy
  AND coalesce(c.balance, 0) > a.low_balance_threshold
  AND NOT EXISTS (SELECT 1 FROM billing.lifecycle_saved_ingresses x
                  WHERE x.account_id = a.id AND x.status IN ('saved', 'disabled'))
  AND NOT EXISTS (SELECT 1 FROM billing.lifecycle_saved_scales x
                  WHERE x.account_id = a.id AND x.status IN ('saved', 'scaled'))
  AND NOT EXISTS (SELECT 1 FROM billing.lifecycle_cleanups x WHERE x.account_id = a.id)
  AND NOT EXISTS (SELECT 1 FROM billing.lifecycle_snapshots x
                  WHERE x.account_id = a.id AND x.status <> 'deleted')
  AND NOT EXISTS (SELECT 1 FROM billing.lifecycle_actions x WHERE x.account_id = a.id AND x.state <> 'done')
"""


def settle_quiet_accounts(conn: psycopg.Connection, now: datetime, *, record: bool = True) -> list[str]:
    """The accounts with nothing to do at ``now`` (see ``_QUIET``), in one statement; with
    ``record`` their evaluation is recorded as the per-account step would (balance, time).

    Recording updates persisted states only: an account with no state yet is left to the
    per-account step, which creates it. A dry run persists nothing, so it counts those too."""
    if not record:
        return [r[0] for r in conn.execute(_QUIET + " ORDER BY a.id").fetchall()]
    rows = conn.execute(
        f"WITH quiet AS ({_QUIET}) "
        "UPDATE billing.account_lifecycle l SET last_balance = q.balance, evaluated_at = %s, "
        "last_entry_id = q.last_entry_id "
        "FROM quiet q WHERE l.account_id = q.id RETURNING l.account_id",
        (now,),
    ).fetchall()
    return sorted(r[0] for r in rows)


def lock_snapshot(
    conn: psycopg.Connection, account_id: str, now: datetime | None = None, *, lock: bool = True
) -> Snapshot | None:
    row = conn.execute(
        "SELECT state, entered_at, grace_deadline, episode, transitions FROM billing.account_lifecycle "
        "WHERE account_id = %s" + (" FOR UPDATE" if lock else ""),
        (account_id,),
    ).fetchone()
    if row is None:
        return None
    return Snapshot(State(row[0]), row[1], row[2], row[3], row[4])


def save_snapshot(
    conn: psycopg.Connection,
    account_id: str,
    snap: Snapshot,
    balance: Decimal,
    now: datetime,
    last_entry_id: int | None = None,
) -> None:
    conn.execute(
        "INSERT INTO billing.account_lifecycle (account_id, state, entered_at, grace_deadline, episode, "
        "transitions, last_balance, evaluated_at, last_entry_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (account_id) DO UPDATE SET state = excluded.state, entered_at = excluded.entered_at, "
        "grace_deadline = excluded.grace_deadline, episode = excluded.episode, "
        "transitions = excluded.transitions, last_balance = excluded.last_balance, "
        "evaluated_at = excluded.evaluated_at, "
        "last_entry_id = coalesce(excluded.last_entry_id, billing.account_lifecycle.last_entry_id)",
        (
            account_id,
            snap.state.value,
            snap.entered_at,
            snap.grace_deadline,
            snap.episode,
            snap.transitions,
            balance,
            now,
            last_entry_id,
        ),
    )


def previous_evaluation(conn: psycopg.Connection, account_id: str) -> tuple[int | None, datetime] | None:
    """``(last_entry_id, evaluated_at)`` of the account's previous evaluation, None if it has none."""
    row = conn.execute(
        "SELECT last_entry_id, evaluated_at FROM billing.account_lifecycle WHERE account_id = %s", (account_id,)
    ).fetchone()
    return (row[0], row[1]) if row else None


# The grant_expiry entries posted after the previous evaluation: by the ledger's order (entry ids
# after the newest one it saw) or, for a state recorded before that was kept, by the grants'
# expiry after its clock. Up to the entry the balance being judged includes.
_EXPIRED_SINCE = """
SELECT t.id, (t.reference ->> 'grant_entry_id')::bigint, -t.amount, t.reference ->> 'expires_at',
       t.reference ->> 'kind', t.reason, t.created_at
FROM billing.credit_transactions t
WHERE t.account_id = %(account)s AND t.type = 'grant_expiry'
  AND (%(upto)s::bigint IS NULL OR t.id <= %(upto)s)
  AND CASE WHEN %(first)s THEN true
           WHEN %(since_id)s::bigint IS NOT NULL THEN t.id > %(since_id)s
           ELSE (t.reference ->> 'expires_at')::timestamptz > %(since_clock)s END
ORDER BY t.id
"""


def credits_expired_since(
    conn: psycopg.Connection, account_id: str, previous: tuple[int | None, datetime] | None, upto: int | None
) -> list[dict[str, Any]]:
    """The account's ``grant_expiry`` entries since its previous evaluation (``previous_evaluation``;
    None: never evaluated, so every one), up to entry ``upto``: what expired, from which grant, when."""
    since_id, since_clock = previous if previous else (None, None)
    rows = conn.execute(
        _EXPIRED_SINCE,
        {
            "account": account_id,
            "upto": upto,
            "first": previous is None,
            "since_id": since_id,
            "since_clock": since_clock,
        },
    ).fetchall()
    return [
        {
            "expiry_entry_id": entry_id,
            "grant_entry_id": grant_id,
            "amount": amount,
            "expires_at": expires_at,
            "kind": kind,
            "reason": reason or "credits expired",
            "posted_at": posted_at,
        }
        for entry_id, grant_id, amount, expires_at, kind, reason, posted_at in rows
    ]


def latest_transition(conn: psycopg.Connection, account_id: str) -> dict[str, Any] | None:
    """The account's newest recorded transition: ``to_state``, ``detail`` and ``decided_at``."""
    row = conn.execute(
        "SELECT to_state, detail, decided_at FROM billing.lifecycle_events "
        "WHERE account_id = %s AND kind = 'transition' ORDER BY id DESC LIMIT 1",
        (account_id,),
    ).fetchone()
    return None if row is None else {"to_state": row[0], "detail": row[1] or {}, "decided_at": row[2]}


def live_deployments(conn: psycopg.Connection, account_id: str) -> list[Deployment]:
    """The account's deployments not deleted by the platform and not (being) cleaned up."""
    rows = conn.execute(
        "SELECT d.id, d.account_id, d.namespace, d.name FROM billing.deployments d "
        "WHERE d.account_id = %s AND d.deleted_at IS NULL "
        "AND NOT EXISTS (SELECT 1 FROM billing.lifecycle_cleanups c WHERE c.deployment_id = d.id) "
        "ORDER BY d.namespace, d.name, d.id",
        (account_id,),
    ).fetchall()
    return [Deployment(*r) for r in rows]


def account_deployments(conn: psycopg.Connection, account_id: str) -> list[Deployment]:
    """Every deployment of the account the platform has not deleted (cleaned up or not)."""
    rows = conn.execute(
        "SELECT id, account_id, namespace, name FROM billing.deployments WHERE account_id = %s "
        "AND deleted_at IS NULL ORDER BY namespace, name, id",
        (account_id,),
    ).fetchall()
    return [Deployment(*r) for r in rows]


def account_namespaces(conn: psycopg.Connection, account_id: str) -> set[str]:
    """Every namespace the account's deployments rows name: the only places cleanup may act."""
    return {
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT namespace FROM billing.deployments WHERE account_id = %s", (account_id,)
        ).fetchall()
    }


def shared_namespaces(conn: psycopg.Connection, account_id: str) -> set[str]:
    """The account's namespaces that also hold another account's deployments."""
    return {
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT d.namespace FROM billing.deployments d JOIN billing.deployments o "
            "ON o.namespace = d.namespace AND o.account_id <> d.account_id WHERE d.account_id = %s",
            (account_id,),
        ).fetchall()
    }


def known_volumes(conn: psycopg.Connection, deployment_ids: list[str]) -> list[Volume]:
    """The PVCs ingestion last saw for these deployments, with their requested size."""
    if not deployment_ids:
        return []
    rows = conn.execute(
        "SELECT DISTINCT ON (namespace, persistentvolumeclaim) namespace, persistentvolumeclaim, deployment_id, "
        "requested_bytes FROM billing.metric_volume_hours WHERE deployment_id = ANY(%s) "
        "ORDER BY namespace, persistentvolumeclaim, hour DESC",
        (deployment_ids,),
    ).fetchall()
    return [Volume(r[0], r[1], r[2], r[3]) for r in rows]


def domains_of(conn: psycopg.Connection, deployment_ids: list[str]) -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    if deployment_ids:
        for host, dep, status in conn.execute(
            "SELECT hostname, deployment_id, status FROM billing.domains WHERE deployment_id = ANY(%s) "
            "ORDER BY hostname",
            (deployment_ids,),
        ).fetchall():
            out.setdefault(dep, []).append((host, status))
    return out


def move_domains(conn: psycopg.Connection, deployment_ids: list[str], old: str, new: str) -> list[str]:
    return [
        r[0]
        for r in conn.execute(
            "UPDATE billing.domains SET status = %s WHERE deployment_id = ANY(%s) AND status = %s RETURNING hostname",
            (new, deployment_ids, old),
        ).fetchall()
    ]


def release_domains(conn: psycopg.Connection, deployment_id: str) -> list[str]:
    return [
        r[0]
        for r in conn.execute(
            "UPDATE billing.domains SET status = 'released' WHERE deployment_id = %s AND status <> 'released' "
            "RETURNING hostname",
            (deployment_id,),
        ).fetchall()
    ]


def record_event(
    conn: psycopg.Connection,
    *,
    key: str,
    account_id: str,
    kind: str,
    action: str,
    outcome: str,
    decided_at: datetime,
    deployment_id: str | None = None,
    from_state: str | None = None,
    to_state: str | None = None,
    target: dict | None = None,
    detail: dict | None = None,
) -> bool:
    """Append one event; False (and nothing written) if ``key`` was recorded before."""
    row = conn.execute(
        "INSERT INTO billing.lifecycle_events (event_key, account_id, deployment_id, kind, action, from_state, "
        "to_state, target, outcome, detail, decided_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (event_key) DO NOTHING RETURNING id",
        (
            key,
            account_id,
            deployment_id,
            kind,
            action,
            from_state,
            to_state,
            json.dumps(target or {}, default=str),
            outcome,
            json.dumps(detail or {}, default=str),
            decided_at,
        ),
    ).fetchone()
    return row is not None


def count_events(conn: psycopg.Connection, key_prefix: str) -> int:
    return conn.execute(
        "SELECT count(*) FROM billing.lifecycle_events WHERE event_key LIKE %s", (key_prefix + "%",)
    ).fetchone()[0]


def events(conn: psycopg.Connection, account_id: str) -> list[dict[str, Any]]:
    cur = conn.execute(
        "SELECT id, event_key, deployment_id, kind, action, from_state, to_state, target, outcome, detail, decided_at "
        "FROM billing.lifecycle_events WHERE account_id = %s ORDER BY id",
        (account_id,),
    )
    cols = [c.name for c in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def fmt_time(ts: datetime | None) -> str:
    return "-" if ts is None else ts.astimezone(tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def fmt_size(size_bytes: Decimal | int | None) -> str:
    if size_bytes is None:
        return "size unknown"
    gib = Decimal(size_bytes) / Decimal(2**30)
    if gib >= 1:
        return f"{gib.quantize(Decimal('0.1')).normalize():f} GiB"
    return f"{(Decimal(size_bytes) / Decimal(2**20)).quantize(Decimal('0.1')).normalize():f} MiB"


def retention_end(expired_at: datetime, account: Account) -> datetime:
    return expired_at + timedelta(days=account.volume_retention_days)
