"""What a cycle did, read back from the database (not from the runs' logs).

``watermarks`` records the newest id of each append-only table before the runs; ``summarise``
reads what was added after them, and the state things are in now.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

WATERMARKED = ("credit_transactions", "notification_outbox", "lifecycle_events")


def watermarks(conn) -> dict[str, int]:
    # Fixed table names (no input): the newest id before the runs.
    return {t: conn.execute(f"SELECT coalesce(max(id), 0) FROM billing.{t}").fetchone()[0] for t in WATERMARKED}


def summarise(conn, marks: dict[str, int], start: datetime, end: datetime) -> dict:
    entries = conn.execute(
        "SELECT type, count(*), sum(amount) FROM billing.credit_transactions WHERE id > %s GROUP BY 1 ORDER BY 1",
        (marks["credit_transactions"],),
    ).fetchall()
    by_account = conn.execute(
        "SELECT account_id, count(*), sum(amount) FROM billing.credit_transactions WHERE id > %s GROUP BY 1 ORDER BY 1",
        (marks["credit_transactions"],),
    ).fetchall()
    states = conn.execute(
        "SELECT state, array_agg(account_id ORDER BY account_id) FROM billing.account_lifecycle GROUP BY 1 ORDER BY 1"
    ).fetchall()
    quarantined = conn.execute(
        "SELECT source_table, source_id, reason FROM billing.quarantined_rows WHERE resolved_at IS NULL "
        "ORDER BY source_table, source_id"
    ).fetchall()
    notices = conn.execute(
        "SELECT account_id, kind, subject FROM billing.notification_outbox WHERE id > %s ORDER BY id",
        (marks["notification_outbox"],),
    ).fetchall()
    failed_deliveries = conn.execute(
        "SELECT o.account_id, d.channel, d.target, d.attempts, d.last_error FROM billing.notification_deliveries d "
        "JOIN billing.notification_outbox o ON o.id = d.notification_id WHERE d.status <> 'delivered' "
        "AND d.last_error IS NOT NULL ORDER BY o.id, d.channel"
    ).fetchall()
    actions = conn.execute(
        "SELECT account_id, deployment_id, kind, action, outcome, target FROM billing.lifecycle_events "
        "WHERE id > %s AND kind IN ('cluster_call', 'cleanup', 'domains', 'dry_run') ORDER BY id",
        (marks["lifecycle_events"],),
    ).fetchall()
    hours = conn.execute(
        "SELECT hour, complete, problems FROM billing.metric_hours WHERE hour >= %s AND hour < %s ORDER BY hour",
        (start, end),
    ).fetchall()
    return {
        "posted": {
            "entries": sum(n for _t, n, _s in entries),
            "by_type": {t: {"entries": n, "amount": s} for t, n, s in entries},
            "by_account": {a: {"entries": n, "amount": s} for a, n, s in by_account},
            "net_amount": sum((s for _t, _n, s in entries), Decimal(0)),
        },
        "accounts_by_state": {state: list(accounts) for state, accounts in states},
        "quarantined": [{"table": t, "id": i, "reason": r} for t, i, r in quarantined],
        "notices_queued": [{"account": a, "kind": k, "subject": s} for a, k, s in notices],
        "failed_deliveries": [
            {"account": a, "channel": c, "target": t, "attempts": n, "error": e} for a, c, t, n, e in failed_deliveries
        ],
        "cluster_actions": [
            {"account": a, "deployment": d, "kind": k, "action": act, "outcome": o, "target": tg}
            for a, d, k, act, o, tg in actions
        ],
        "metrics": {
            "hours": len(hours),
            "complete": sum(1 for _h, c, _p in hours if c),
            "incomplete": [{"hour": h, "problems": p} for h, c, p in hours if not c],
        },
    }
