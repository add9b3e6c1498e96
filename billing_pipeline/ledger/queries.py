"""Reads of the credit ledger: an account's entries page by page, and the usage entries that
settled a month's hours (by their usage hour, ``keys.usage_hour_sql``: the ledger's one reading).

Writes stay in ``posting.py``; these functions only read ``billing.credit_transactions``. Amounts
are ``Decimal`` exactly as stored (micro-credits); rows come back as named tuples whose fields
keep the columns' order, so the command line prints them (and their JSON) as they are.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

import psycopg

from billing_pipeline.ledger.keys import usage_hour_sql


class LedgerLine(NamedTuple):
    """One ledger entry as an account's ledger listing shows it."""

    id: int
    created_at: datetime
    type: str
    amount: Decimal
    balance_after: Decimal
    idempotency_key: str
    reason: str | None
    actor: str | None
    reference: dict[str, Any]


class LedgerPage(NamedTuple):
    """Up to ``limit`` entries of one account, newest first, and where the next (older) page starts."""

    entries: list[LedgerLine]
    total_entries: int  # every entry of the account, not only this page's
    next_before: int | None  # pass as ``before`` for the next page; None when this is the last page


_LEDGER_LINES = """
SELECT id, created_at, type, amount, balance_after, idempotency_key, reason, actor, reference
FROM billing.credit_transactions
WHERE account_id = %(account)s AND (%(before)s::bigint IS NULL OR id < %(before)s::bigint)
ORDER BY account_seq DESC
LIMIT %(limit)s
"""


def ledger_page(conn: psycopg.Connection, account_id: str, *, limit: int, before: int | None = None) -> LedgerPage:
    """The account's newest ``limit`` entries, or the newest ``limit`` older than entry ``before``.

    The account is not checked here: an unknown account simply has no entries (ask
    ``balance_of`` first to refuse it with a message).
    """
    total = conn.execute(
        "SELECT count(*) FROM billing.credit_transactions WHERE account_id = %s", (account_id,)
    ).fetchone()[0]
    # One row more than asked says whether an older page exists, without a second count.
    rows = conn.execute(_LEDGER_LINES, {"account": account_id, "before": before, "limit": limit + 1}).fetchall()
    entries = [LedgerLine._make(row) for row in rows[:limit]]
    more = len(rows) > limit
    return LedgerPage(entries, total, entries[-1].id if more and entries else None)


_USAGE_SETTLED = f"""
SELECT coalesce(sum(amount), 0) FROM (
    SELECT amount, {usage_hour_sql()} AS hour FROM billing.credit_transactions
    WHERE account_id = %(account)s AND type IN ('usage_deduction', 'reversal')
) e
WHERE hour >= %(start)s AND hour < %(end)s
"""


def usage_settled(conn: psycopg.Connection, account_id: str, start: datetime, end: datetime) -> Decimal:
    """What the ledger holds for the usage hours in ``[start, end)`` (negative: deducted), posted at
    any time: the sum of the usage entries whose usage hour (``keys.usage_hour``) lies there."""
    return conn.execute(_USAGE_SETTLED, {"account": account_id, "start": start, "end": end}).fetchone()[0]


class UsageEntry(NamedTuple):
    """A usage ledger entry (a deduction, or the reversal of one) and the hour it settled."""

    entry_id: int
    type: str
    amount: Decimal
    created_at: datetime
    idempotency_key: str
    hour: datetime
    usage_kind: str | None
    is_estimate: bool


_USAGE_ENTRIES = f"""
SELECT * FROM (
    SELECT id AS entry_id, type, amount, created_at, idempotency_key,
           {usage_hour_sql()} AS hour, reference->>'usage_kind' AS usage_kind,
           coalesce((reference->>'is_estimate')::boolean, false) AS is_estimate
    FROM billing.credit_transactions
    WHERE account_id = %(account)s AND type IN ('usage_deduction', 'reversal')
) e
WHERE hour >= %(start)s AND hour < %(end)s
ORDER BY hour, usage_kind, entry_id
"""


def usage_entries(conn: psycopg.Connection, account_id: str, start: datetime, end: datetime) -> list[UsageEntry]:
    """Every usage entry whose hour lies in ``[start, end)``, by hour, usage kind, then entry id."""
    rows = conn.execute(_USAGE_ENTRIES, {"account": account_id, "start": start, "end": end}).fetchall()
    return [UsageEntry._make(row) for row in rows]
