"""Grant expiry: what is left of a grant past its ``expires_at`` leaves the balance by one entry.

docs/rules/ledger.md, "Grant expiry". The hourly cycle calls ``expire_due_grants(conn, now)`` at the run's clock (the
``ledger/grant_expiry`` asset, after the settlement). In one transaction:

1. the settlement's advisory lock (``deduction.SETTLEMENT_LOCK``) is taken, so an expiry run and
   a settlement never interleave (a usage deduction of an hour before the expiry draws on the
   grant first; the expiry then takes what is left), and two expiry runs are serialised;
2. the ``billing.credits`` rows of the accounts with a due grant are locked in account order (the
   order ``post_entries`` locks them in), so a writer outside the settlement (a negative
   adjustment from the command line) cannot draw on a grant between the read and the entry;
3. one statement reads every grant with ``expires_at <= now`` and ``remaining > 0``
   (``billing.grant_balances``), and one ``post_entries`` batch posts a ``grant_expiry`` for
   each: amount = −remaining, key ``grant_expiry:<grant entry id>`` (``keys.grant_expiry_key``),
   reference ``{grant_entry_id, expires_at, kind}``, reason "promotional credits expired" (or
   paid, SLA, free). Posting draws exactly that amount from the grant, booked as ``expired``.

Exactly once: the key is the grant's, so a re-run, a run killed at any point (its transaction
dies with it) or two runs at once post one entry per grant; after the first commits, the second
finds the grant's remaining at zero and posts nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

import psycopg

from billing_pipeline.core.errors import BillingError
from billing_pipeline.ledger.deduction import SETTLEMENT_LOCK
from billing_pipeline.ledger.entries import Entry
from billing_pipeline.ledger.grants import identity_mismatches
from billing_pipeline.ledger.keys import grant_expiry_key
from billing_pipeline.ledger.posting import post_entries

EXPIRY_TYPE = "grant_expiry"

# What the entry (and the lifecycle, and `billing status`) says, by the grant's origin.
_REASONS = {
    "promotional_grant": "promotional credits expired",
    "sla_credit": "SLA credits expired",
    "admin_adjustment": "free credits expired",
}
PAID_REASON = "paid credits expired"


def expiry_reason(kind: str | None, source_type: str | None) -> str:
    """The words for an expired grant: "promotional credits expired", "paid credits expired" …"""
    if kind == "paid":
        return PAID_REASON
    return _REASONS.get(source_type or "", "promotional credits expired")


_DUE_ACCOUNTS = """
SELECT c.account_id FROM billing.credits c
WHERE c.account_id IN (
    SELECT b.account_id FROM billing.grant_balances b
    JOIN billing.grants g ON g.entry_id = b.grant_entry_id
    WHERE b.remaining > 0 AND g.expires_at <= %(now)s
)
ORDER BY c.account_id
FOR UPDATE
"""

# Read after the accounts are locked, in a statement of its own: it sees every entry committed
# before (a concurrent expiry run's included, which leaves remaining at zero).
_DUE = """
SELECT g.entry_id, g.account_id, g.kind, g.source_type, g.expires_at, b.remaining
FROM billing.grant_balances b
JOIN billing.grants g ON g.entry_id = b.grant_entry_id
WHERE b.remaining > 0 AND g.expires_at <= %(now)s
ORDER BY g.account_id, g.expires_at, g.entry_id
"""


@dataclass(frozen=True)
class ExpiredGrant:
    account_id: str
    grant_entry_id: int
    kind: str
    source_type: str
    expires_at: datetime
    amount: Decimal  # what was left, now expired (positive)
    entry_id: int  # the grant_expiry entry
    created: bool


@dataclass
class ExpiryResult:
    now: datetime
    expired: list[ExpiredGrant] = field(default_factory=list)

    @property
    def posted(self) -> list[ExpiredGrant]:
        return [e for e in self.expired if e.created]

    @property
    def total(self) -> Decimal:
        """Credits expired by this run (positive)."""
        return sum((e.amount for e in self.posted), Decimal("0.000000"))

    def summary(self) -> str:
        posted = self.posted
        return (
            f"grant expiry at {self.now.isoformat()}: {len(posted)} grant(s) expired, {self.total} credits "
            f"from {len({e.account_id for e in posted})} account(s); "
            f"{len(self.expired) - len(posted)} already posted"
        )


def expiry_entry(
    grant_entry_id: int, account_id: str, kind: str, source_type: str, expires_at: datetime, remaining: Decimal
) -> Entry:
    """The ``grant_expiry`` entry of a grant with ``remaining`` credits left at its expiry."""
    return Entry(
        account_id,
        EXPIRY_TYPE,
        -remaining,
        grant_expiry_key(grant_entry_id),
        reference={
            "grant_entry_id": int(grant_entry_id),
            "expires_at": expires_at.astimezone(UTC).isoformat(),
            "kind": kind,
        },
        reason=expiry_reason(kind, source_type),
    )


def expire_due_grants(conn: psycopg.Connection, now: datetime) -> ExpiryResult:
    """Post one ``grant_expiry`` for every grant past its expiry at ``now`` with credits left."""
    if now.tzinfo is None:
        raise BillingError(
            f"grant expiry clock {now.isoformat()} has no time zone; give it in UTC, e.g. 2026-11-25T14:00:00Z."
        )
    now = now.astimezone(UTC)
    result = ExpiryResult(now)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (SETTLEMENT_LOCK,))
        conn.execute(_DUE_ACCOUNTS, {"now": now}, prepare=False)
        rows = conn.execute(_DUE, {"now": now}, prepare=False).fetchall()
        entries = [expiry_entry(*row) for row in rows]
        posted = post_entries(conn, entries)
    for (grant_id, account, kind, source_type, expires_at, _remaining), outcome in zip(rows, posted):
        result.expired.append(
            ExpiredGrant(
                account, grant_id, kind, source_type, expires_at, -outcome.amount, outcome.entry_id, outcome.created
            )
        )
    return result


def grant_identity_mismatches(conn: psycopg.Connection, limit: int = 20) -> list[tuple[str, Decimal, Decimal, Decimal]]:
    """Accounts whose balance is not their grants' remaining minus their debt:
    ``(account, balance, remaining, debt)``, at most ``limit``."""
    with conn.cursor() as cur:
        return identity_mismatches(cur, limit=limit)
