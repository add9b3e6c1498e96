"""Delivering queued notifications, each channel at most once after it succeeded.

Each (notification, channel) row is claimed with ``FOR UPDATE SKIP LOCKED`` for the time of its
send, so two delivery runs never send the same row at once. Success marks the channel
``delivered`` in the same transaction; a failure records the error, counts the attempt and sets
``next_attempt_at`` with exponential backoff (1 min, 2, 4 … capped at 6 h); after
``MAX_ATTEMPTS`` the channel is marked ``failed`` for a person to look at. A delivered channel
is never sent again, whatever happens to the other channel.

The one window left is a crash after the server accepted a message and before the commit: the
message is then sent again. Both channels carry a stable id (email ``Message-ID``, webhook
``X-Satusky-Delivery``) so receivers can drop that duplicate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg

from billing_pipeline.core.clock import system_now
from billing_pipeline.resources.notify import NotifyResource

MAX_ATTEMPTS = 10
BASE_BACKOFF = timedelta(minutes=1)
MAX_BACKOFF = timedelta(hours=6)

_CLAIM = """
SELECT d.notification_id, d.channel, d.target, d.attempts, o.account_id, o.kind, o.subject, o.body, o.payload,
       o.created_at
FROM billing.notification_deliveries d
JOIN billing.notification_outbox o ON o.id = d.notification_id
WHERE d.status = 'pending' AND (d.attempts = 0 OR d.next_attempt_at <= %(now)s)
  AND d.channel <> ALL(%(unconfigured)s::text[])
ORDER BY d.next_attempt_at, d.notification_id, d.channel
LIMIT 1
FOR UPDATE OF d SKIP LOCKED
"""


@dataclass
class DeliveryResult:
    delivered: list[tuple[int, str]] = field(default_factory=list)
    failed: list[tuple[int, str, str]] = field(default_factory=list)
    # channel -> (why it is not configured, deliveries left pending with their attempts untouched)
    skipped: dict[str, tuple[str, int]] = field(default_factory=dict)

    def summary(self) -> str:
        return (
            f"notifications: {len(self.delivered)} delivered, {len(self.failed)} failed (will retry unless exhausted)"
            + "".join(f"; {ch} skipped: {why} ({n} pending, no retry spent)" for ch, (why, n) in self.skipped.items())
        )


def backoff(attempts: int) -> timedelta:
    return min(BASE_BACKOFF * (2 ** max(attempts - 1, 0)), MAX_BACKOFF)


def webhook_body(
    notification_id: int, account_id: str, kind: str, subject: str, body: str, payload: dict, created_at: datetime
) -> bytes:
    return json.dumps(
        {
            "id": str(notification_id),
            "kind": kind,
            "account_id": account_id,
            "subject": subject,
            "body": body,
            "payload": payload,
            "created_at": created_at.astimezone(UTC).isoformat(),
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()


def deliver_due(
    conn: psycopg.Connection, notify: NotifyResource, now: datetime | None = None, limit: int = 1000
) -> DeliveryResult:
    """Send every due channel (up to ``limit``), one transaction per channel."""
    now = now or system_now()
    result = DeliveryResult()
    missing = notify.missing_configuration()
    unconfigured = sorted(missing)
    for channel in unconfigured:
        waiting = conn.execute(
            "SELECT count(*) FROM billing.notification_deliveries WHERE status = 'pending' AND channel = %s",
            (channel,),
        ).fetchone()[0]
        result.skipped[channel] = (missing[channel], waiting)
    for _ in range(limit):
        with conn.transaction():
            row = conn.execute(_CLAIM, {"now": now, "unconfigured": unconfigured}).fetchone()
            if row is None:
                break
            nid, channel, target, attempts, account_id, kind, subject, body, payload, created_at = row
            try:
                if channel == "email":
                    notify.send_email(
                        to=target, subject=subject, body=body, message_id=f"<notification-{nid}@billing.satusky.io>"
                    )
                else:
                    notify.post_webhook(
                        url=target,
                        event=kind,
                        delivery_id=str(nid),
                        body=webhook_body(nid, account_id, kind, subject, body, payload, created_at),
                    )
            except Exception as exc:  # any channel failure is recorded and retried, never fatal
                error = f"{type(exc).__name__}: {exc}"[:1000]
                exhausted = attempts + 1 >= MAX_ATTEMPTS
                conn.execute(
                    "UPDATE billing.notification_deliveries SET attempts = attempts + 1, last_error = %s, "
                    "status = %s, next_attempt_at = %s WHERE notification_id = %s AND channel = %s",
                    (error, "failed" if exhausted else "pending", now + backoff(attempts + 1), nid, channel),
                )
                result.failed.append((nid, channel, error))
                continue
            conn.execute(
                "UPDATE billing.notification_deliveries SET attempts = attempts + 1, status = 'delivered', "
                "delivered_at = %s, last_error = NULL WHERE notification_id = %s AND channel = %s",
                (now, nid, channel),
            )
            result.delivered.append((nid, channel))
    return result
