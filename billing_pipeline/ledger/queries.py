"""Reads of the credit ledger: an account's entries page by page, a month's movements, and the
usage entries that settled a month's hours.

Writes stay in ``posting.py``; these functions only read ``billing.credit_transactions``. Amounts
are ``Decimal`` exactly as stored (micro-credits); rows come back as named tuples whose fields
keep the columns' order, so the command line prints them (and their JSON) as they are.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

import psycopg


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


class MonthMovements(NamedTuple):
    """How an account's balance moved over a window (a month), from the ledger alone.

    ``usage_settled_in_month`` counts usage entries *posted* in the window; ``usage_of_month_settled``
    counts usage entries whose *hour* lies in the window, whenever they were posted. The two differ
    when an hour is settled late or corrected after the month ends.
    """

    opening: Decimal  # balance before ``start``
    closing: Decimal  # balance before ``end`` (today's balance while the month runs)
    topups: Decimal
    sla_credits: Decimal
    adjustments: Decimal
    usage_settled_in_month: Decimal  # negative: usage deductions and their reversals posted in the window
    usage_of_month_settled: Decimal  # negative: the same for the window's hours, posted at any time


_MONTH_MOVEMENTS = """
SELECT
    coalesce(sum(amount) FILTER (WHERE created_at < %(start)s), 0) AS opening,
    coalesce(sum(amount) FILTER (WHERE created_at < %(end)s), 0) AS closing,
    coalesce(sum(amount) FILTER (WHERE created_at >= %(start)s AND created_at < %(end)s
                                 AND type IN ('topup', 'auto_topup')), 0) AS topups,
    coalesce(sum(amount) FILTER (WHERE created_at >= %(start)s AND created_at < %(end)s
                                 AND type = 'sla_credit'), 0) AS sla_credits,
    coalesce(sum(amount) FILTER (WHERE created_at >= %(start)s AND created_at < %(end)s
                                 AND type = 'admin_adjustment'), 0) AS adjustments,
    coalesce(sum(amount) FILTER (WHERE created_at >= %(start)s AND created_at < %(end)s
                                 AND (type = 'usage_deduction' OR (type = 'reversal' AND reference ? 'hour'))), 0)
        AS usage_settled_in_month,
    coalesce(sum(amount) FILTER (WHERE (type = 'usage_deduction' OR (type = 'reversal' AND reference ? 'hour'))
                                 AND (reference->>'hour')::timestamptz >= %(start)s
                                 AND (reference->>'hour')::timestamptz < %(end)s), 0) AS usage_of_month_settled
FROM billing.credit_transactions
WHERE account_id = %(account)s
"""


def month_movements(conn: psycopg.Connection, account_id: str, start: datetime, end: datetime) -> MonthMovements:
    """Opening and closing balance of ``[start, end)`` and what moved it, by kind of entry."""
    row = conn.execute(_MONTH_MOVEMENTS, {"account": account_id, "start": start, "end": end}).fetchone()
    return MonthMovements._make(row)


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


_USAGE_ENTRIES = """
SELECT id AS entry_id, type, amount, created_at, idempotency_key,
       (reference->>'hour')::timestamptz AS hour, reference->>'usage_kind' AS usage_kind,
       coalesce((reference->>'is_estimate')::boolean, false) AS is_estimate
FROM billing.credit_transactions
WHERE account_id = %(account)s AND type IN ('usage_deduction', 'reversal') AND reference ? 'hour'
  AND (reference->>'hour')::timestamptz >= %(start)s AND (reference->>'hour')::timestamptz < %(end)s
ORDER BY (reference->>'hour')::timestamptz, reference->>'usage_kind', id
"""


def usage_entries(conn: psycopg.Connection, account_id: str, start: datetime, end: datetime) -> list[UsageEntry]:
    """Every usage entry whose hour lies in ``[start, end)``, by hour, usage kind, then entry id."""
    rows = conn.execute(_USAGE_ENTRIES, {"account": account_id, "start": start, "end": end}).fetchall()
    return [UsageEntry._make(row) for row in rows]
