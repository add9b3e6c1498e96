"""Warnings before credits expire: one notice per grant (docs/rules/ledger.md, "Grant expiry").

A grant with credits left (``billing.grant_balances.remaining > 0``) whose ``expires_at`` falls
within the account's ``grant_expiry_warning_days`` of the run's clock (``now < expires_at <= now
+ days``; 0 days turns the warning off) gets one notice by email and signed webhook, queued in
the outbox under the key ``grant_expiry_warning:<grant entry id>``: the outbox's unique key makes
it once per grant, whatever the number of runs (or runs at once). One statement for every account.
A grant extended, used up or expired before a run sees it inside the window gets no warning.
"""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg

from billing_pipeline.notifications.outbox import ENQUEUE_SET

NOTICE_KIND = "grant_expiry_warning"

_WARNINGS = """
SELECT g.account_id,
       'grant_expiry_warning' AS kind,
       'grant_expiry_warning:' || g.entry_id AS dedupe_key,
       'Satusky: ' || b.remaining::text || ' ' || w.words || ' on account ' || g.account_id || ' expire on ' ||
           to_char(g.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') || ' UTC' AS subject,
       'Account ' || g.account_id || ' has ' || b.remaining::text || ' ' || w.words || ' left of the ' ||
           g.granted::text || ' granted on ' || to_char(g.granted_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') ||
           ' (grant ' || g.entry_id || '). They expire on ' ||
           to_char(g.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') || ' UTC: what is left then is ' ||
           'removed from the balance (' || coalesce(c.balance, 0)::text || ' credits now), which may then ' ||
           'reach the low-balance threshold or zero. Usage draws on them first while they last.' AS body,
       jsonb_build_object(
           'event', 'grant_expiry_warning', 'account_id', g.account_id, 'grant_entry_id', g.entry_id,
           'kind', g.kind, 'source_type', g.source_type, 'remaining', b.remaining::text,
           'granted', g.granted::text, 'expires_at', g.expires_at, 'balance', coalesce(c.balance, 0)::text,
           'at', %(now)s::timestamptz
       ) AS payload
FROM billing.grant_balances b
JOIN billing.grants g ON g.entry_id = b.grant_entry_id
JOIN billing.accounts a ON a.id = g.account_id
LEFT JOIN billing.credits c ON c.account_id = g.account_id
CROSS JOIN LATERAL (
    SELECT CASE WHEN g.kind = 'paid' THEN 'paid credits'
                WHEN g.source_type = 'promotional_grant' THEN 'promotional credits'
                WHEN g.source_type = 'sla_credit' THEN 'SLA credits'
                ELSE 'free credits' END AS words
) w
WHERE b.remaining > 0
  AND g.expires_at > %(now)s
  AND g.expires_at <= %(now)s + make_interval(days => a.grant_expiry_warning_days)
  AND NOT EXISTS (SELECT 1 FROM billing.notification_outbox o
                  WHERE o.dedupe_key = 'grant_expiry_warning:' || g.entry_id)
ORDER BY g.account_id, g.expires_at, g.entry_id
"""


def queue_grant_expiry_warnings(conn: psycopg.Connection, now: datetime) -> int:
    """Queue the warning of every grant expiring within its account's warning window at ``now``
    and not warned before; returns how many were queued."""
    now = now.astimezone(UTC)
    with conn.transaction():
        return conn.execute(ENQUEUE_SET.format(select=_WARNINGS), {"now": now}).fetchone()[0]
