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
   line per top-up, SLA credit, promotional grant, adjustment, other reversal and grant expiry
   (whose period is the month its grant expired, docs/rules/month-end.md). A line's amount is the exact sum of
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
from decimal import Decimal

import psycopg

from billing_pipeline.core.clock import system_now
from billing_pipeline.core.hours import HOUR
from billing_pipeline.invoicing.months import month_bounds, month_text, next_month
from billing_pipeline.ledger.checkpoint import HEAD_OF
from billing_pipeline.ledger.keys import period_sql

PRICED_USAGE = "analytics.fct_priced_usage"

# Accounts that get an invoice for the month: no invoice for it or a later month yet.
_CANDIDATES = """
CREATE TEMP TABLE close_candidates ON COMMIT DROP AS
SELECT a.id AS account_id, a.created_at
FROM billing.accounts a
WHERE NOT EXISTS (SELECT 1 FROM billing.invoices i WHERE i.account_id = a.id AND i.period_month >= %(month)s)
  AND (%(account)s::text IS NULL OR a.id = %(account)s::text)
"""

# The period is computed once per entry (the subquery is fenced by OFFSET 0); usage entries keep
# only what their lines need (millions of rows a month), other entries their reference and reason.
_ENTRIES = f"""
CREATE TEMP TABLE close_entries ON COMMIT DROP AS
SELECT * FROM (
    SELECT t.id, t.account_id, t.type, t.amount, k.usage_kind,
           CASE WHEN k.usage_kind IS NULL THEN t.reason END AS reason,
           CASE WHEN k.usage_kind IS NULL THEN t.actor END AS actor,
           CASE WHEN k.usage_kind IS NULL THEN t.reference END AS reference,
           {period_sql("t")} AS period
    FROM billing.credit_transactions t
    JOIN close_candidates c ON c.account_id = t.account_id
    CROSS JOIN LATERAL (
        SELECT CASE WHEN t.type IN ('usage_deduction', 'reversal') THEN t.reference ->> 'usage_kind' END AS usage_kind
    ) k
    WHERE NOT EXISTS (SELECT 1 FROM billing.invoice_entries ie WHERE ie.ledger_entry_id = t.id)
    OFFSET 0
) e
WHERE e.period <= %(month)s AND (%(from)s::date IS NULL OR e.period >= %(from)s::date)
"""

_ACCOUNTS = """
CREATE TEMP TABLE close_accounts ON COMMIT DROP AS
SELECT c.account_id, prev.id AS previous_invoice_id, coalesce(prev.closing_balance, 0) AS opening_balance
FROM close_candidates c
LEFT JOIN LATERAL (
    SELECT i.id, i.closing_balance FROM billing.invoices i
    WHERE i.account_id = c.account_id AND i.period_month < %(month)s ORDER BY i.period_month DESC LIMIT 1
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
               WHEN 'promotional_grant' THEN 'Promotional credits: ' || coalesce(reason, '')
                    || coalesce(', expiring ' || to_char(billing.grant_time(reference -> 'grant' ->> 'expires_at')
                                                         AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') || ' UTC', '')
               WHEN 'grant_expiry' THEN 'Credits expired, unused: grant of entry '
                    || coalesce(reference ->> 'grant_entry_id', '?')
                    || coalesce(' (expired ' || to_char(billing.grant_time(reference ->> 'expires_at') AT TIME ZONE 'UTC',
                                                        'YYYY-MM-DD HH24:MI') || ' UTC)', '')
               ELSE type END
           || CASE WHEN period < %(month)s THEN ' (' || to_char(period, 'YYYY-MM') || ')' ELSE '' END,
           CASE WHEN type = 'sla_credit' THEN reference ELSE reference - 'account_id' END
    FROM close_entries WHERE usage_kind IS NULL
)
SELECT g.*, g.period < %(month)s AS prior_period,
       row_number() OVER (
           PARTITION BY g.account_id
           ORDER BY g.period < %(month)s,
                    array_position(ARRAY['usage', 'sla_credit', 'topup', 'auto_topup', 'promotional_grant', 'admin_adjustment',
                                         'reversal', 'grant_expiry'],
                                   g.line_type),
                    g.usage_kind, g.period, g.first_id
       )::integer AS line_no
FROM grouped g
"""

_INVOICES = f"""
WITH totals AS (
    SELECT account_id, sum(amount) AS total FROM close_lines GROUP BY account_id
), numbered AS (
    SELECT c.*, coalesce(t.total, 0) AS total, row_number() OVER (ORDER BY c.account_id) AS rn
    FROM close_accounts c LEFT JOIN totals t USING (account_id)
)
INSERT INTO billing.invoices (
    number, account_id, period_month, opening_balance, total, closing_balance, previous_invoice_id,
    unbilled_hours, unbilled_hour_count, chain_head_entry_id, chain_head_seq, chain_head_hash, close_id, issued_at)
SELECT %(last)s + n.rn, n.account_id, %(month)s, n.opening_balance, n.total, n.opening_balance + n.total,
       n.previous_invoice_id, %(unbilled)s::jsonb, %(unbilled_count)s, h.id, h.account_seq, h.entry_hash, %(close_id)s,
       %(issued_at)s
FROM numbered n
LEFT JOIN LATERAL ({HEAD_OF.format(account="n.account_id")}) h ON true
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


def unbilled_hours(conn: psycopg.Connection, month: date, until: datetime | None = None) -> list[dict]:
    """The hours of the month whose usage is not (finally) billed yet, as ranges with a reason;
    with ``until`` (a draft's clock), only the hours that began before it."""
    start, end = month_bounds(month)
    if until is not None:
        floor = until.replace(minute=0, second=0, microsecond=0)
        end = min(end, floor if floor == until else floor + HOUR)
        if end <= start:
            return []
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
        params = {
            "month": month,
            "start": start,
            "end": end,
            "close_id": close_id,
            "last": last,
            "account": None,
            "from": None,
            # The product's clock (as the ledger's created_at), not the database's: a test that
            # sets the clock sees invoices issued at its time, whatever the date it runs on.
            "issued_at": system_now(),
        }
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


# ---- the same computation, not issued: `billing explain` of a month not closed yet -----------------

_OPEN_MONTHS = f"""
SELECT (SELECT max(i.period_month) FROM billing.invoices i WHERE i.account_id = %(account)s),
       (SELECT min(p.period) FROM (
            SELECT {period_sql("t")} AS period FROM billing.credit_transactions t
            WHERE t.account_id = %(account)s
              AND NOT EXISTS (SELECT 1 FROM billing.invoice_entries ie WHERE ie.ledger_entry_id = t.id)
            OFFSET 0) p)
"""

_FOLDED = """
SELECT coalesce(sum(t.amount), 0) FROM billing.credit_transactions t
WHERE t.account_id = %(account)s
  AND NOT EXISTS (SELECT 1 FROM billing.invoice_entries ie WHERE ie.ledger_entry_id = t.id)
  AND {period} < %(from)s
""".format(period=period_sql("t"))

_PREVIEW_LINES = """
SELECT line_no, line_type, usage_kind, period, prior_period, description, amount, ids
FROM close_lines WHERE account_id = %(account)s ORDER BY line_no
"""


@dataclass(frozen=True)
class InvoicePreview:
    """What closing ``month`` now would issue for one account (nothing is written)."""

    opening_balance: Decimal
    lines: list[tuple]  # (line_no, line_type, usage_kind, period, prior_period, description, amount, ids)
    total: Decimal
    closing_balance: Decimal
    previous_invoice_id: int | None


def preview_invoice(conn: psycopg.Connection, account_id: str, month: date) -> InvoicePreview:
    """The invoice of ``account_id`` for ``month`` as the close would issue it now: the same
    statements as ``issue_invoices`` (the same entries by ``billing.ledger_entry_period``, the same
    lines and opening), run in a transaction that is rolled back.

    Months are closed in order, so a month after the first open one is shown as it will be once
    the months before it are closed too: the entries of those earlier open months are in its
    opening (they will be on their own invoices), not among its lines. The first open month
    (after the account's last invoice) carries, like the close, the entries of earlier periods
    settled after their invoice as prior-period lines.
    """
    start, end = month_bounds(month)
    params = {"month": month, "start": start, "end": end, "account": account_id, "from": None}
    last_invoiced, first_open_period = conn.execute(_OPEN_MONTHS, params, prepare=False).fetchone()
    first_open = next_month(last_invoiced) if last_invoiced is not None else (first_open_period or month)
    folded = Decimal("0")
    if month > first_open:
        params["from"] = month
        folded = conn.execute(_FOLDED, params, prepare=False).fetchone()[0]
    lines, row = [], None
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SET LOCAL jit = off")
        cur.execute(_CANDIDATES, params, prepare=False)
        cur.execute(_ENTRIES, params, prepare=False)
        cur.execute(_ACCOUNTS, params, prepare=False)
        cur.execute(_LINES, params, prepare=False)
        lines = cur.execute(_PREVIEW_LINES, params, prepare=False).fetchall()
        row = cur.execute(
            "SELECT opening_balance, previous_invoice_id FROM close_accounts WHERE account_id = %(account)s",
            params,
        ).fetchone()
        raise psycopg.Rollback()  # the temporary tables go with it; nothing else was written
    opening = (row[0] if row else Decimal("0")) + folded
    total = sum((line[6] for line in lines), Decimal("0"))
    return InvoicePreview(opening, lines, total, opening + total, row[1] if row else None)
