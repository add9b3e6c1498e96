"""Issuing the month's invoices (docs/rules/month-end.md): set-based SQL in one transaction.

``issue_invoices(conn, month, close_id)``:

1. Locks the one row of ``billing.invoice_number_counter`` (``FOR UPDATE``). Every close takes
   it first, so closes are serialised: the second of two concurrent closes waits, then sees the
   first one's invoices and issues nothing for them. Numbers are the counter + 1, 2, … in issue
   order (account id within one close) and the counter moves in the same transaction, so a
   rolled-back close leaves no gap. Only this moves it: a trigger refuses any UPDATE that does not
   set it to the highest issued number (migration 0011), and ``billing verify`` checks it.
2. Collects, for every account without an invoice for this month or a later one (none: done at
   once, so closing again costs next to nothing), every ledger
   entry of period ≤ month (``billing.ledger_entry_period``: the usage hour's month, the measured
   month of an SLA credit, else the month of ``created_at``) not yet on an invoice
   (``billing.invoice_entries``, whose primary key is the entry: exactly one invoice per entry).
   Entries of an earlier period are prior-period lines.
3. Groups them into lines: usage (deductions and their reversals) per usage kind and period; one
   line per top-up, SLA credit, adjustment and other reversal. A line's amount is the exact sum of
   its entries; the invoice's total is the sum of its lines; opening = the previous invoice's
   closing (0 for the first), closing = opening + total (also a check constraint).
4. Writes invoices, lines, their entries, the resource detail beneath the usage lines (from
   ``analytics.fct_priced_usage``: quantity, unit, unit price per resource, machine rentals and
   workload consumption apart; shown, not summed), the hours of the month not yet billed
   (metrics missing or incomplete) and the chain head (the account's newest ledger entry and its
   stored hash) at issue. The tables refuse UPDATE and DELETE afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import psycopg

from billing_pipeline.core.hours import HOUR
from billing_pipeline.invoicing.months import month_bounds, month_text

PRICED_USAGE = "analytics.fct_priced_usage"

# Accounts that get an invoice for the month: no invoice for it or a later month yet.
_CANDIDATES = """
CREATE TEMP TABLE close_candidates ON COMMIT DROP AS
SELECT a.id AS account_id, a.created_at
FROM billing.accounts a
WHERE NOT EXISTS (SELECT 1 FROM billing.invoices i WHERE i.account_id = a.id AND i.period_month >= %(month)s)
"""

# The period is computed once per entry (the subquery is fenced by OFFSET 0); usage entries keep
# only what their lines need (millions of rows a month), other entries their reference and reason.
_ENTRIES = """
CREATE TEMP TABLE close_entries ON COMMIT DROP AS
SELECT * FROM (
    SELECT t.id, t.account_id, t.type, t.amount, k.usage_kind,
           CASE WHEN k.usage_kind IS NULL THEN t.reason END AS reason,
           CASE WHEN k.usage_kind IS NULL THEN t.actor END AS actor,
           CASE WHEN k.usage_kind IS NULL THEN t.reference END AS reference,
           billing.ledger_entry_period(t.type, t.reference, t.created_at) AS period
    FROM billing.credit_transactions t
    JOIN close_candidates c ON c.account_id = t.account_id
    CROSS JOIN LATERAL (
        SELECT CASE WHEN t.type IN ('usage_deduction', 'reversal') THEN t.reference ->> 'usage_kind' END AS usage_kind
    ) k
    WHERE NOT EXISTS (SELECT 1 FROM billing.invoice_entries ie WHERE ie.ledger_entry_id = t.id)
    OFFSET 0
) e
WHERE e.period <= %(month)s
"""

_ACCOUNTS = """
CREATE TEMP TABLE close_accounts ON COMMIT DROP AS
SELECT c.account_id, prev.id AS previous_invoice_id, coalesce(prev.closing_balance, 0) AS opening_balance
FROM close_candidates c
LEFT JOIN LATERAL (
    SELECT i.id, i.closing_balance FROM billing.invoices i
    WHERE i.account_id = c.account_id ORDER BY i.period_month DESC LIMIT 1
) prev ON true
WHERE c.created_at < %(end)s OR prev.id IS NOT NULL
   OR EXISTS (SELECT 1 FROM close_entries e WHERE e.account_id = c.account_id)
"""

_LINES = """
CREATE TEMP TABLE close_lines ON COMMIT DROP AS
WITH grouped AS (
    SELECT account_id, 'usage'::text AS line_type, usage_kind, period,
           array_agg(id) AS ids, sum(amount) AS amount, min(id) AS first_id,
           CASE usage_kind WHEN 'machine_rental' THEN 'Machine rental (rented capacity)'
                           WHEN 'workload_consumption' THEN 'Workload consumption'
                           ELSE 'Usage: ' || usage_kind END
           || CASE WHEN period < %(month)s THEN ', usage of ' || to_char(period, 'YYYY-MM') || ' settled after its invoice'
                   ELSE '' END AS description,
           jsonb_build_object('entries', count(*), 'deductions', count(*) FILTER (WHERE type = 'usage_deduction'),
                              'reversals', count(*) FILTER (WHERE type = 'reversal')) AS detail
    FROM close_entries WHERE usage_kind IS NOT NULL
    GROUP BY account_id, usage_kind, period
    UNION ALL
    SELECT account_id, type, NULL, period, ARRAY[id], amount, id,
           CASE type
               WHEN 'topup' THEN 'Top-up'
               WHEN 'auto_topup' THEN 'Automatic top-up'
               WHEN 'sla_credit' THEN 'SLA credit, deployment ' || coalesce(reference ->> 'deployment_id', '?')
                    || ' (availability ' || coalesce(to_char((reference ->> 'availability')::numeric * 100, 'FM990.000'), '?')
                    || '%%)'
               WHEN 'admin_adjustment' THEN 'Adjustment: ' || coalesce(reason, '') || ' (by ' || coalesce(actor, '') || ')'
               WHEN 'reversal' THEN 'Reversal of entry ' || coalesce(reference ->> 'reverses', '?')
               ELSE type END
           || CASE WHEN period < %(month)s THEN ' (' || to_char(period, 'YYYY-MM') || ')' ELSE '' END,
           CASE WHEN type = 'sla_credit' THEN reference ELSE reference - 'account_id' END
    FROM close_entries WHERE usage_kind IS NULL
)
SELECT g.*, g.period < %(month)s AS prior_period,
       row_number() OVER (
           PARTITION BY g.account_id
           ORDER BY g.period < %(month)s,
                    array_position(ARRAY['usage', 'sla_credit', 'topup', 'auto_topup', 'admin_adjustment', 'reversal'],
                                   g.line_type),
                    g.usage_kind, g.period, g.first_id
       )::integer AS line_no
FROM grouped g
"""

_INVOICES = """
WITH totals AS (
    SELECT account_id, sum(amount) AS total FROM close_lines GROUP BY account_id
), numbered AS (
    SELECT c.*, coalesce(t.total, 0) AS total, row_number() OVER (ORDER BY c.account_id) AS rn
    FROM close_accounts c LEFT JOIN totals t USING (account_id)
)
INSERT INTO billing.invoices (
    number, account_id, period_month, opening_balance, total, closing_balance, previous_invoice_id,
    unbilled_hours, unbilled_hour_count, chain_head_entry_id, chain_head_seq, chain_head_hash, close_id)
SELECT %(last)s + n.rn, n.account_id, %(month)s, n.opening_balance, n.total, n.opening_balance + n.total,
       n.previous_invoice_id, %(unbilled)s::jsonb, %(unbilled_count)s, h.id, h.account_seq, h.entry_hash, %(close_id)s
FROM numbered n
LEFT JOIN LATERAL (
    SELECT t.id, t.account_seq, t.entry_hash FROM billing.credit_transactions t
    WHERE t.account_id = n.account_id ORDER BY t.account_seq DESC LIMIT 1
) h ON true
ORDER BY n.rn
"""

_WRITE_LINES = """
CREATE TEMP TABLE close_invoices ON COMMIT DROP AS
SELECT id AS invoice_id, account_id FROM billing.invoices WHERE close_id = %(close_id)s;

INSERT INTO billing.invoice_lines (invoice_id, line_no, line_type, usage_kind, period_month, prior_period,
                                   description, amount, ledger_entry_ids, detail)
SELECT i.invoice_id, l.line_no, l.line_type, l.usage_kind, l.period, l.prior_period, l.description, l.amount,
       l.ids, l.detail
FROM close_lines l JOIN close_invoices i USING (account_id);

INSERT INTO billing.invoice_entries (ledger_entry_id, invoice_id, line_no)
SELECT e.id, i.invoice_id, l.line_no
FROM close_lines l JOIN close_invoices i USING (account_id)
CROSS JOIN LATERAL unnest(l.ids) AS e (id)
"""

_DETAILS = f"""
INSERT INTO billing.invoice_line_details (invoice_id, usage_kind, resource, machine_type, unit, unit_price,
                                          quantity, covered_quantity, amount)
SELECT i.invoice_id, u.usage_kind, u.resource, u.machine_type, u.unit, u.unit_price,
       coalesce(sum(u.quantity) FILTER (WHERE u.coverage IS DISTINCT FROM 'covered_by_rental'), 0),
       coalesce(sum(u.quantity) FILTER (WHERE u.coverage = 'covered_by_rental'), 0),
       sum(u.amount)
FROM {PRICED_USAGE} u
JOIN close_invoices i USING (account_id)
WHERE u.hour >= %(start)s AND u.hour < %(end)s
GROUP BY i.invoice_id, u.usage_kind, u.resource, u.machine_type, u.unit, u.unit_price
"""

_UNBILLED = """
SELECT h.hour, CASE WHEN m.hour IS NULL THEN 'not ingested yet' ELSE 'metrics incomplete' END
FROM generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '1 hour', interval '1 hour') AS h (hour)
LEFT JOIN billing.metric_hours m ON m.hour = h.hour
WHERE m.hour IS NULL OR NOT m.complete
ORDER BY h.hour
"""


@dataclass
class IssueResult:
    month: date
    close_id: str
    invoices_issued: int = 0
    first_number: int | None = None
    last_number: int | None = None
    lines: int = 0
    entries: int = 0
    prior_period_lines: int = 0
    unbilled_hours: int = 0

    def as_dict(self) -> dict:
        return {
            "month": month_text(self.month),
            "close_id": self.close_id,
            "invoices_issued": self.invoices_issued,
            "first_number": self.first_number,
            "last_number": self.last_number,
            "lines": self.lines,
            "ledger_entries": self.entries,
            "prior_period_lines": self.prior_period_lines,
            "unbilled_hours": self.unbilled_hours,
        }


def unbilled_hours(conn: psycopg.Connection, month: date) -> list[dict]:
    """The hours of the month whose usage is not (finally) billed yet, as ranges with a reason."""
    start, end = month_bounds(month)
    ranges: list[dict] = []
    for hour, reason in conn.execute(_UNBILLED, {"start": start, "end": end}).fetchall():
        last = ranges[-1] if ranges else None
        if last and last["reason"] == reason and datetime.fromisoformat(last["to"]) == hour:
            last["to"] = (hour + HOUR).isoformat()
            last["hours"] += 1
        else:
            ranges.append({"from": hour.isoformat(), "to": (hour + HOUR).isoformat(), "hours": 1, "reason": reason})
    return ranges


def issue_invoices(conn: psycopg.Connection, month: date, close_id: str) -> IssueResult:
    """Issue every invoice of ``month`` not issued yet (see the module); returns what was done."""
    import json

    start, end = month_bounds(month)
    result = IssueResult(month, close_id)
    with conn.transaction(), conn.cursor() as cur:
        last = cur.execute(
            "SELECT last_number FROM billing.invoice_number_counter WHERE singleton FOR UPDATE"
        ).fetchone()[0]
        cur.execute("SET LOCAL jit = off")  # one-off statements: compiling costs more than it saves
        params = {"month": month, "start": start, "end": end, "close_id": close_id, "last": last}
        cur.execute(_CANDIDATES, params, prepare=False)
        if not cur.rowcount:  # every account is invoiced for this month (or later): nothing to do
            return result
        cur.execute(_ENTRIES, params, prepare=False)
        cur.execute("ANALYZE close_entries")
        cur.execute(_ACCOUNTS, params, prepare=False)
        cur.execute(_LINES, params, prepare=False)
        unbilled = unbilled_hours(conn, month)
        result.unbilled_hours = sum(r["hours"] for r in unbilled)
        cur.execute(
            _INVOICES,
            {**params, "unbilled": json.dumps(unbilled), "unbilled_count": result.unbilled_hours},
            prepare=False,
        )
        issued = cur.rowcount
        if issued:
            for statement in _WRITE_LINES.split(";\n\n"):
                cur.execute(statement, params, prepare=False)
            if cur.execute("SELECT to_regclass(%s)", (PRICED_USAGE,)).fetchone()[0] is not None:
                cur.execute(_DETAILS, params, prepare=False)
            cur.execute(
                "UPDATE billing.invoice_number_counter SET last_number = last_number + %s WHERE singleton", (issued,)
            )
            result.lines, result.entries, result.prior_period_lines = cur.execute(
                "SELECT count(*), coalesce(sum(cardinality(ids)), 0), count(*) FILTER (WHERE prior_period) "
                "FROM close_lines l JOIN close_invoices USING (account_id)"
            ).fetchone()
            result.invoices_issued, result.first_number, result.last_number = issued, last + 1, last + issued
    return result
