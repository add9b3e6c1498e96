"""Reads of the credit grants (docs/rules/credit-reports.md): an account's grants, and one month's paid and free
credits, for `billing grants`, `billing explain` and the invoice.

Writes stay in ``posting.py`` (grants and their draws are written there, with the entries);
these functions only read ``billing.grants``, ``billing.grant_draws`` and ``billing.grant_balances``.

**The month of a draw** (docs/rules/credit-reports.md), the one rule every reader of a month follows
(``grant_summary`` here, and the dbt marts ``fct_credit_revenue`` through
``int_grant_draws_dated``; tests/integration/test_grant_reads.py holds the two to the letter):
the later of the period of the entry that drew (``billing.ledger_entry_period``: a usage
deduction's usage hour, a ``grant_expiry``'s expiry month, else when posted) and the period of the
entry that opened the grant (its month on the invoice: an SLA credit posted at the close of
October is October's, as on the invoice). Credits are never used before they were granted: a debt of October paid by a
November top-up is drawn in November.

**As of an invoice**: an issued invoice shows the grants as they stood when it was issued, so
that rendering it again, months later, gives the same figures. A draw is part of the ledger
from the entry that caused it: the later of its drawing entry and its grant (a debt paid by a
later grant, a reversal giving back). ``as_of_entry`` (the invoice's chain head) keeps the draws
and grants up to that entry.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import NamedTuple

import psycopg

from billing_pipeline.core.times import month_bounds
from billing_pipeline.ledger.keys import period_sql

ZERO = Decimal("0")


class GrantRow(NamedTuple):
    """One grant of an account, with what is left of it (``billing grants``)."""

    entry_id: int  # the ledger entry that opened it
    kind: str  # paid | free
    source_type: str  # the entry's type: topup, auto_topup, promotional_grant, sla_credit, admin_adjustment
    priority: int  # lower burns first
    granted: Decimal
    drawn: Decimal
    expired: Decimal
    remaining: Decimal
    granted_at: datetime
    expires_at: datetime | None  # None: never expires
    status: str  # open (credits left) | used (drawn to zero) | expired (its remainder expired)


_GRANTS = """
SELECT g.entry_id, g.kind, g.source_type, g.priority, g.granted,
       coalesce(b.drawn, 0), coalesce(b.expired, 0), coalesce(b.remaining, g.granted),
       g.granted_at, g.expires_at,
       CASE WHEN coalesce(b.remaining, g.granted) > 0 THEN 'open'
            WHEN coalesce(b.expired, 0) > 0 THEN 'expired' ELSE 'used' END
FROM billing.grants g
LEFT JOIN billing.grant_balances b ON b.grant_entry_id = g.entry_id
WHERE g.account_id = %(account)s AND (%(all)s OR coalesce(b.remaining, g.granted) > 0)
ORDER BY g.priority, g.expires_at NULLS LAST, g.entry_id
"""


def account_grants(conn: psycopg.Connection, account_id: str, *, include_closed: bool = False) -> list[GrantRow]:
    """The account's grants in burn order (priority, earliest expiry, oldest): only those with
    credits left, or every one with ``include_closed``. The account is not checked here."""
    rows = conn.execute(_GRANTS, {"account": account_id, "all": include_closed}).fetchall()
    return [GrantRow._make(row) for row in rows]


class GrantTerms(NamedTuple):
    """What the posting opened for an entry: kind, priority and expiry."""

    kind: str
    priority: int
    expires_at: datetime | None


def grant_terms(conn: psycopg.Connection, entry_id: int) -> GrantTerms | None:
    """The grant the entry ``entry_id`` opened, or None (an entry that opened none)."""
    row = conn.execute(
        "SELECT kind, priority, expires_at FROM billing.grants WHERE entry_id = %s", (entry_id,)
    ).fetchone()
    return GrantTerms._make(row) if row else None


def account_debt(conn: psycopg.Connection, account_id: str) -> Decimal:
    """What the account's debits took beyond its grants and no grant has paid yet (positive)."""
    return conn.execute(
        "SELECT coalesce(sum(outstanding), 0) FROM billing.grant_debts WHERE account_id = %s", (account_id,)
    ).fetchone()[0]


class RemainingByExpiry(NamedTuple):
    """Credits left at the end of a month that expire at one moment (``None``: never)."""

    expires_at: datetime | None
    paid: Decimal
    free: Decimal
    total: Decimal


class GrantSummary(NamedTuple):
    """One month of an account's grants. Amounts are positive credits; ``drawn`` nets the credits
    reversals gave back. ``remaining`` is what was left at the month's end, soonest expiry first."""

    month: date
    granted_paid: Decimal
    granted_free: Decimal
    drawn_paid: Decimal
    drawn_free: Decimal
    expired_paid: Decimal
    expired_free: Decimal
    remaining_paid: Decimal
    remaining_free: Decimal
    remaining: list[RemainingByExpiry]

    @property
    def expired(self) -> Decimal:
        return self.expired_paid + self.expired_free


# One statement: the grants granted before the month's end, their draws dated by the rule of the
# module, summed for the month (granted, drawn, expired) and up to its end (remaining).
_SUMMARY = f"""
WITH g AS (
    SELECT * FROM (
        SELECT g.entry_id, g.kind, g.expires_at, g.granted, {period_sql("t")} AS granted_month
        FROM billing.grants g
        JOIN billing.credit_transactions t ON t.id = g.entry_id
        WHERE g.account_id = %(account)s AND (%(as_of)s::bigint IS NULL OR g.entry_id <= %(as_of)s::bigint)
    ) granted WHERE granted_month <= %(month)s
), d AS (
    SELECT d.grant_entry_id, d.amount, t.type = 'grant_expiry' AS is_expiry,
           greatest({period_sql("t")}, g.granted_month) AS month
    FROM billing.grant_draws d
    JOIN g ON g.entry_id = d.grant_entry_id
    JOIN billing.credit_transactions t ON t.id = d.entry_id
    WHERE %(as_of)s::bigint IS NULL OR greatest(d.entry_id, d.grant_entry_id) <= %(as_of)s::bigint
), per_grant AS (
    SELECT g.entry_id, g.kind, g.expires_at, g.granted, g.granted_month,
           coalesce(sum(d.amount) FILTER (WHERE d.month = %(month)s AND NOT d.is_expiry), 0) AS drawn,
           coalesce(sum(d.amount) FILTER (WHERE d.month = %(month)s AND d.is_expiry), 0) AS expired,
           g.granted - coalesce(sum(d.amount) FILTER (WHERE d.month <= %(month)s), 0) AS remaining
    FROM g LEFT JOIN d ON d.grant_entry_id = g.entry_id
    GROUP BY g.entry_id, g.kind, g.expires_at, g.granted, g.granted_month
)
SELECT 'month' AS part, NULL::timestamptz AS expires_at,
       coalesce(sum(granted) FILTER (WHERE kind = 'paid' AND granted_month = %(month)s), 0),
       coalesce(sum(granted) FILTER (WHERE kind = 'free' AND granted_month = %(month)s), 0),
       coalesce(sum(drawn) FILTER (WHERE kind = 'paid'), 0), coalesce(sum(drawn) FILTER (WHERE kind = 'free'), 0),
       coalesce(sum(expired) FILTER (WHERE kind = 'paid'), 0), coalesce(sum(expired) FILTER (WHERE kind = 'free'), 0),
       coalesce(sum(remaining) FILTER (WHERE kind = 'paid'), 0), coalesce(sum(remaining) FILTER (WHERE kind = 'free'), 0)
FROM per_grant
UNION ALL
SELECT 'remaining', expires_at, 0, 0, 0, 0, 0, 0,
       coalesce(sum(remaining) FILTER (WHERE kind = 'paid'), 0), coalesce(sum(remaining) FILTER (WHERE kind = 'free'), 0)
FROM per_grant WHERE remaining <> 0
GROUP BY expires_at
ORDER BY 1, 2 NULLS LAST
"""


def grant_summary(
    conn: psycopg.Connection, account_id: str, month: date, *, as_of_entry: int | None = None
) -> GrantSummary:
    """The account's paid and free credits of ``month`` (its first day): granted, drawn and expired
    in the month, and what remained at its end by expiry date, to the micro-credit of the ledger.

    ``as_of_entry``: only the grants and draws the ledger held up to that entry (an issued
    invoice's chain head; 0 for an account that had no entry), else everything posted so far.
    """
    month = month.replace(day=1)
    _, end = month_bounds(month)
    rows = conn.execute(
        _SUMMARY, {"account": account_id, "month": month, "end": end, "as_of": as_of_entry}, prepare=False
    ).fetchall()
    head = rows[0][2:]
    remaining = [RemainingByExpiry(r[1], r[8], r[9], r[8] + r[9]) for r in rows[1:]]
    return GrantSummary(month, *head, remaining)
