"""The notification outbox: queue a message in the caller's transaction, deliver it later.

Any job that decides something a person must hear about (a low balance, a failed top-up, a
grace period starting) calls ``enqueue_notification`` inside the same transaction as the
decision. The ``dedupe_key`` is unique: taking the same decision twice queues one message. The
alert job (``billing_pipeline.alerts.delivery``) then sends each queued message by email and by
signed webhook, recording each channel's outcome so a retry never re-sends a delivered channel.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import psycopg

from billing_pipeline.core.errors import InputError

# Recipients are resolved at queue time from the account row: the addresses in force when the
# decision was taken. notify_email falls back to the account's email.
_CHANNELS = """channels AS (
    INSERT INTO billing.notification_deliveries (notification_id, channel, target)
    SELECT q.id, c.channel, c.target
    FROM queued q
    JOIN billing.accounts a ON a.id = q.account_id
    CROSS JOIN LATERAL (VALUES ('email', coalesce(nullif(btrim(a.notify_email), ''), nullif(btrim(a.email), ''))),
                               ('webhook', nullif(btrim(a.notify_webhook_url), ''))) AS c (channel, target)
    WHERE c.target IS NOT NULL
    RETURNING notification_id
)"""

_ENQUEUE = """
WITH queued AS (
    INSERT INTO billing.notification_outbox (account_id, kind, dedupe_key, subject, body, payload)
    SELECT a.id, %(kind)s, %(dedupe_key)s, %(subject)s, %(body)s, %(payload)s::jsonb
    FROM billing.accounts a
    WHERE a.id = %(account_id)s
    ON CONFLICT (dedupe_key) DO NOTHING
    RETURNING id, account_id
), {channels}
SELECT (SELECT count(*) FROM queued), (SELECT count(*) FROM channels),
       EXISTS (SELECT 1 FROM billing.accounts WHERE id = %(account_id)s)
""".replace("{channels}", _CHANNELS)

# Set-based form for jobs that queue many notifications at once: the caller's SELECT (a SQL
# text producing account_id, kind, dedupe_key, subject, body, payload) is wrapped by this.
ENQUEUE_SET = """
WITH wanted AS ({select}),
queued AS (
    INSERT INTO billing.notification_outbox (account_id, kind, dedupe_key, subject, body, payload)
    SELECT account_id, kind, dedupe_key, subject, body, payload FROM wanted
    ON CONFLICT (dedupe_key) DO NOTHING
    RETURNING id, account_id
), {channels}
SELECT (SELECT count(*) FROM queued)
""".replace("{channels}", _CHANNELS)


def enqueue_notification(
    conn: psycopg.Connection,
    *,
    account_id: str,
    kind: str,
    dedupe_key: str,
    subject: str,
    body: str,
    payload: Mapping[str, Any],
) -> bool:
    """Queue one notification in the caller's transaction; False if ``dedupe_key`` was queued before.

    Nothing is committed here: the message exists exactly when the caller's decision commits.
    Delivery channels are the account's ``notify_email`` (else ``email``) and
    ``notify_webhook_url``, whichever are set.
    """
    for name, value in (("account_id", account_id), ("kind", kind), ("dedupe_key", dedupe_key), ("subject", subject)):
        if not isinstance(value, str) or not value.strip():
            raise InputError(f"enqueue_notification: {name} is empty; every notification needs one.")
    try:
        payload_json = json.dumps(dict(payload), default=str, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise InputError(f"notification {dedupe_key!r}: payload is not JSON ({exc}).") from None
    queued, _channels, account_exists = conn.execute(
        _ENQUEUE,
        {
            "account_id": account_id,
            "kind": kind,
            "dedupe_key": dedupe_key,
            "subject": subject,
            "body": body,
            "payload": payload_json,
        },
    ).fetchone()
    if not account_exists:
        raise InputError(f"notification {dedupe_key!r}: unknown account {account_id!r} (not in billing.accounts).")
    return bool(queued)
