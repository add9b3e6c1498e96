"""Settling priced usage: the ledger pays for what ``fct_usage_charges`` says is owed.

For every account, UTC hour and usage kind (``workload_consumption`` | ``machine_rental``) the
amount owed is the mart's ``amount``, already rounded half-even to micro-credits by dbt (the
``round_half_even`` macro; the ledger module's ``round_credits`` applies the same rule to every
writer and so finds nothing left to round here). What was already settled is
read back from the ledger itself: the sum of ``usage_deduction`` and ``reversal`` entries whose
reference names that same account, hour and usage kind. The difference, computed in one SQL
statement for the whole window, is posted through the ledger module:

* nothing settled yet -> a ``usage_deduction`` with key ``usage:<account>:<hour>:<kind>`` (``keys.usage_key``);
* more owed than settled (late data, a correction, an estimate made final) -> another
  ``usage_deduction`` for the difference, key ``...:<n>`` (n = entries already settling it),
  reference ``{"adjusts": <original entry id>}``;
* less owed than settled -> a ``reversal`` of the difference, reference
  ``{"reverses": <original entry id>}``.

Every entry's reference carries ``{"hour", "usage_kind", "account_id"}`` (the convention the dbt
models match on; the hour spelled as ``core.hours.Hour.text``, as in the idempotency key) plus
``owed`` (the hour's total after this entry) and ``is_estimate: true`` when the hour was priced
as an estimate. Nothing is ever edited. The whole settlement runs under one transaction-scoped
advisory lock, so two runs at once are serialised and the second finds nothing left to post;
the idempotency keys make a repeated batch a no-op even without the lock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

import psycopg
from psycopg import sql

from billing_pipeline.core.errors import BillingError
from billing_pipeline.core.hours import HOUR_TEXT_SQL
from billing_pipeline.ledger.entries import MICRO, Entry
from billing_pipeline.ledger.keys import usage_key
from billing_pipeline.ledger.posting import post_entries

CHARGES_SCHEMA = "analytics"
CHARGES_TABLE = "fct_usage_charges"
SETTLEMENT_LOCK = "billing.credit_usage"


# One statement: owed per account/hour/kind from the mart, settled so far from the ledger, and
# the difference. Hours are only considered if the mart holds them (an hour not materialised is
# not reversed); within such an hour, an account whose usage vanished is settled back to zero.
_DIFFERENCES = """
WITH usage AS (
    SELECT u.account_id, u.hour, u.usage_kind, u.amount, coalesce(u.is_estimate, false) AS is_estimate,
           u.priced_row_count
    FROM {mart} u
    WHERE (%(start)s::timestamptz IS NULL OR u.hour >= %(start)s::timestamptz)
      AND (%(end)s::timestamptz IS NULL OR u.hour < %(end)s::timestamptz)
), hours AS (
    SELECT DISTINCT {hour_text} AS hour_text FROM usage u
), owed AS (
    SELECT u.account_id, {hour_text} AS hour_text, u.usage_kind,
           u.amount AS owed, u.is_estimate, u.priced_row_count AS lines
    FROM usage u
    JOIN billing.accounts a ON a.id = u.account_id
), settled AS (
    SELECT t.account_id, t.reference ->> 'hour' AS hour_text, t.reference ->> 'usage_kind' AS usage_kind,
           -sum(t.amount) AS settled, count(*) AS entries,
           min(t.id) FILTER (WHERE t.type = 'usage_deduction') AS original_id
    FROM billing.credit_transactions t
    WHERE t.type IN ('usage_deduction', 'reversal') AND t.reference ? 'usage_kind'
      -- An array, not IN (subquery): the planner then looks the hours up in the partial index
      -- credit_transactions_usage_hour_idx. With IN it misjudged how many hours there are
      -- and read the whole ledger (1 s at a year of history, growing with it).
      AND t.reference ->> 'hour' = ANY (ARRAY(SELECT hour_text FROM hours))
    GROUP BY 1, 2, 3
)
SELECT coalesce(o.account_id, s.account_id), coalesce(o.hour_text, s.hour_text),
       coalesce(o.usage_kind, s.usage_kind), coalesce(o.owed, 0), coalesce(s.settled, 0),
       coalesce(s.entries, 0), s.original_id, coalesce(o.is_estimate, false), coalesce(o.lines, 0)
FROM owed o
FULL JOIN settled s USING (account_id, hour_text, usage_kind)
WHERE coalesce(o.owed, 0) <> coalesce(s.settled, 0)
ORDER BY 1, 2, 3
"""

_UNKNOWN_ACCOUNTS = """
SELECT DISTINCT u.account_id FROM {mart} u
WHERE (%(start)s::timestamptz IS NULL OR u.hour >= %(start)s::timestamptz)
  AND (%(end)s::timestamptz IS NULL OR u.hour < %(end)s::timestamptz)
  AND NOT EXISTS (SELECT 1 FROM billing.accounts a WHERE a.id = u.account_id)
LIMIT 20
"""


@dataclass
class SettlementResult:
    """What one settlement run did."""

    start: datetime | None
    end: datetime | None
    deductions: int = 0
    adjustments: int = 0
    reversals: int = 0
    already_posted: int = 0
    total_deducted: Decimal = Decimal("0")
    accounts: set[str] = field(default_factory=set)
    unknown_accounts: list[str] = field(default_factory=list)

    @property
    def posted(self) -> int:
        return self.deductions + self.adjustments + self.reversals

    def summary(self) -> str:
        window = f"[{self.start.isoformat() if self.start else '-inf'}, {self.end.isoformat() if self.end else '+inf'})"
        return (
            f"usage settlement {window}: {self.deductions} deduction(s), {self.adjustments} adjusting "
            f"deduction(s), {self.reversals} reversal(s), net {self.total_deducted} credits deducted "
            f"from {len(self.accounts)} account(s); {self.already_posted} already posted"
        )


def _mart(schema: str, table: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise BillingError(f"usage settlement window bound {value!r} has no time zone; pass UTC times.")
    return value.astimezone(UTC)


def settle_priced_usage(
    conn: psycopg.Connection,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    schema: str = CHARGES_SCHEMA,
    table: str = CHARGES_TABLE,
) -> SettlementResult:
    """Post what ``fct_usage_charges`` says is owed for the hours in ``[start, end)`` (all hours
    if None) and the ledger does not hold yet, exactly once."""
    start, end = _utc(start), _utc(end)
    params = {"start": start, "end": end}
    mart = _mart(schema, table)
    query = sql.SQL(_DIFFERENCES).format(
        mart=mart,
        hour_text=sql.SQL(HOUR_TEXT_SQL.format(col="u.hour")),
    )
    result = SettlementResult(start, end)
    with conn.transaction():
        if not conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f'"{schema}"."{table}"',)).fetchone()[0]:
            raise BillingError(
                f"usage charges table {schema}.{table} does not exist: build the dbt project first "
                "(`billing run` or `dbt build`), then settle usage."
            )
        # Serialise settlements: a second run waits, then sees the first one's entries.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (SETTLEMENT_LOCK,))
        rows = conn.execute(query, params).fetchall()
        result.unknown_accounts = [r[0] for r in conn.execute(sql.SQL(_UNKNOWN_ACCOUNTS).format(mart=mart), params)]
        entries = [_entry(*row) for row in rows]
        posted = post_entries(conn, entries)
    for entry, outcome in zip(entries, posted):
        if not outcome.created:
            result.already_posted += 1
            continue
        if entry.type == "reversal":
            result.reversals += 1
        elif "adjusts" in entry.reference:
            result.adjustments += 1
        else:
            result.deductions += 1
        result.total_deducted -= outcome.amount
        result.accounts.add(entry.account_id)
    return result


def _entry(account_id, hour_text, usage_kind, owed, settled, entries, original_id, is_estimate, lines) -> Entry:
    difference = owed - settled  # > 0: more is owed; < 0: too much was deducted
    key = usage_key(account_id, hour_text, usage_kind, entries)
    # Kept small on purpose (it is validated and hashed per entry): what was settled, the total
    # owed after this entry, and whether it was an estimate. What was settled before is the
    # ledger's own sum of the earlier entries.
    reference = {
        "hour": hour_text,
        "usage_kind": usage_kind,
        "account_id": account_id,
        "owed": str(owed.quantize(MICRO)),
    }
    if is_estimate:
        reference["is_estimate"] = True
    if difference > 0:
        if original_id is not None:
            reference["adjusts"] = original_id
        return Entry(account_id, "usage_deduction", -difference, key, reference)
    if original_id is None:
        raise BillingError(
            f"account {account_id!r}, hour {hour_text}, {usage_kind}: priced usage is negative ({owed}) "
            "and nothing was deducted before; check fct_priced_usage for a negative price or quantity."
        )
    reference["reverses"] = original_id
    return Entry(account_id, "reversal", -difference, key, reference)
