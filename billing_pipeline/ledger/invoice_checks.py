"""``billing verify``'s checks of the issued invoices against the ledger (docs/rules/month-end.md).

An issued invoice states amounts, so the verifier holds each one to the ledger, set-based:

* **lines**: each line's amount is the exact sum of the ledger entries it names
  (``invoice_lines.ledger_entry_ids``); those entries exist, belong to the invoice's account,
  are named once and are the ones ``invoice_entries`` records for that line;
* **totals**: total = the sum of the lines, closing = opening + total, opening = the account's
  previous invoice's closing (0 for the first), ``previous_invoice_id`` is that invoice;
* **chain head**: the entry the invoice recorded as its account's chain head at issue still
  exists, in that account, at that sequence number, with that hash; this is what catches an
  account's newest entries deleted after an invoice was issued;
* **numbering**: numbers are 1, 2, … without a gap, and the counter equals the last one.

The invoice tables belong to ``invoicing``; they are read here (SQL, no import) because the
verifier must see them, and ``invoicing`` already depends on the ledger. ``invoice_problems``
with an ``invoice_id`` checks one invoice: the document refuses to print one that fails.
"""

from __future__ import annotations

import psycopg

from billing_pipeline.ledger.problems import LedgerProblem

# One invoice (the document's check): driven by its lines' own lists, through the primary keys of
# the ledger and of invoice_entries, so it costs index lookups.
_INVOICE_LINES = """
SELECT i.account_id, i.invoice_number, l.line_no, l.amount, cardinality(l.ledger_entry_ids) AS named,
       count(ie.ledger_entry_id) FILTER (WHERE ie.invoice_id = l.invoice_id AND ie.line_no = l.line_no) AS recorded,
       count(t.id) AS found, coalesce(sum(t.amount), 0) AS ledger_sum,
       count(t.id) FILTER (WHERE t.account_id <> i.account_id) AS foreign_entries
FROM billing.invoice_lines l
JOIN billing.invoices i ON i.id = l.invoice_id
CROSS JOIN LATERAL unnest(l.ledger_entry_ids) AS e (id)
LEFT JOIN billing.credit_transactions t ON t.id = e.id
LEFT JOIN billing.invoice_entries ie ON ie.ledger_entry_id = e.id
WHERE l.invoice_id = %(invoice)s
GROUP BY i.id, l.invoice_id, l.line_no
HAVING count(ie.ledger_entry_id) FILTER (WHERE ie.invoice_id = l.invoice_id AND ie.line_no = l.line_no)
       <> cardinality(l.ledger_entry_ids)
    OR count(t.id) <> cardinality(l.ledger_entry_ids) OR coalesce(sum(t.amount), 0) <> l.amount
    OR count(t.id) FILTER (WHERE t.account_id <> i.account_id) > 0
ORDER BY l.line_no
"""

# Every invoice, in two passes of hash joins (index lookups per entry cost twice as much at a
# million entries). First, the lines' lists and invoice_entries hold the same entries, each on
# the same invoice and line (an entry named where it is not recorded, or recorded where no line
# names it) ...
_ALL_LINE_LISTS = """
SELECT i.account_id, i.invoice_number, x.line_no, x.unrecorded, x.unnamed, x.elsewhere
FROM (
    SELECT coalesce(n.invoice_id, ie.invoice_id) AS invoice_id, coalesce(n.line_no, ie.line_no) AS line_no,
           count(*) FILTER (WHERE ie.ledger_entry_id IS NULL) AS unrecorded,
           count(*) FILTER (WHERE n.entry_id IS NULL) AS unnamed,
           count(*) FILTER (WHERE n.entry_id IS NOT NULL AND ie.ledger_entry_id IS NOT NULL) AS elsewhere
    FROM (
        SELECT l.invoice_id, l.line_no, e.id AS entry_id
        FROM billing.invoice_lines l CROSS JOIN LATERAL unnest(l.ledger_entry_ids) AS e (id)
    ) n
    FULL JOIN billing.invoice_entries ie ON ie.ledger_entry_id = n.entry_id
    WHERE n.entry_id IS NULL OR ie.ledger_entry_id IS NULL OR ie.invoice_id <> n.invoice_id OR ie.line_no <> n.line_no
    GROUP BY 1, 2
) x
LEFT JOIN billing.invoices i ON i.id = x.invoice_id
ORDER BY i.number, x.line_no
"""

# ... then each line's amount is the exact sum of those entries, which exist, are its account's,
# and are as many as the line names (an entry named twice shows here).
_ALL_LINE_SUMS = """
WITH recorded AS (
    SELECT ie.invoice_id, ie.line_no, count(*) AS recorded, count(t.id) AS found,
           coalesce(sum(t.amount), 0) AS ledger_sum,
           count(t.id) FILTER (WHERE t.account_id <> i.account_id) AS foreign_entries
    FROM billing.invoice_entries ie
    LEFT JOIN billing.credit_transactions t ON t.id = ie.ledger_entry_id
    LEFT JOIN billing.invoices i ON i.id = ie.invoice_id
    GROUP BY ie.invoice_id, ie.line_no
)
SELECT i.account_id, i.invoice_number, coalesce(l.line_no, r.line_no), l.amount,
       coalesce(cardinality(l.ledger_entry_ids), 0), coalesce(r.recorded, 0), coalesce(r.found, 0),
       coalesce(r.ledger_sum, 0), coalesce(r.foreign_entries, 0)
FROM billing.invoice_lines l
FULL JOIN recorded r ON r.invoice_id = l.invoice_id AND r.line_no = l.line_no
LEFT JOIN billing.invoices i ON i.id = coalesce(l.invoice_id, r.invoice_id)
WHERE l.invoice_id IS NULL OR r.invoice_id IS NULL OR r.recorded <> cardinality(l.ledger_entry_ids)
   OR r.found <> r.recorded OR r.ledger_sum <> l.amount OR r.foreign_entries > 0
ORDER BY i.number, 3
"""

_TOTALS = """
SELECT i.account_id, i.invoice_number, i.opening_balance, i.total, i.closing_balance,
       coalesce(l.lines_total, 0), i.previous_invoice_id, p.prev_id, p.prev_number, coalesce(p.prev_closing, 0)
FROM billing.invoices i
JOIN (
    SELECT id, lag(id) OVER w AS prev_id, lag(invoice_number) OVER w AS prev_number,
           lag(closing_balance) OVER w AS prev_closing
    FROM billing.invoices
    WINDOW w AS (PARTITION BY account_id ORDER BY period_month)
) p ON p.id = i.id
LEFT JOIN (SELECT invoice_id, sum(amount) AS lines_total FROM billing.invoice_lines GROUP BY invoice_id) l
    ON l.invoice_id = i.id
WHERE (%(invoice)s::bigint IS NULL OR i.id = %(invoice)s::bigint)
  AND (i.total <> coalesce(l.lines_total, 0) OR i.closing_balance <> i.opening_balance + i.total
       OR i.opening_balance <> coalesce(p.prev_closing, 0) OR i.previous_invoice_id IS DISTINCT FROM p.prev_id)
ORDER BY i.number
"""

_HEADS = """
SELECT i.account_id, i.invoice_number, i.chain_head_entry_id, i.chain_head_seq, i.chain_head_hash,
       t.id, t.account_id, t.account_seq, t.entry_hash
FROM billing.invoices i
LEFT JOIN billing.credit_transactions t ON t.id = i.chain_head_entry_id
WHERE (%(invoice)s::bigint IS NULL OR i.id = %(invoice)s::bigint)
  AND CASE WHEN i.chain_head_entry_id IS NULL
           THEN EXISTS (SELECT 1 FROM billing.invoice_lines l WHERE l.invoice_id = i.id)
           ELSE t.id IS NULL OR t.account_id <> i.account_id OR t.account_seq IS DISTINCT FROM i.chain_head_seq
                OR t.entry_hash IS DISTINCT FROM i.chain_head_hash
      END
ORDER BY i.number
"""

_NUMBERING = """
SELECT (SELECT count(*) FROM billing.invoices), (SELECT coalesce(max(number), 0) FROM billing.invoices),
       (SELECT count(*) FROM billing.invoice_number_counter), (SELECT max(last_number) FROM billing.invoice_number_counter)
"""

_MISSING_NUMBERS = """
SELECT g FROM generate_series(1, %s::bigint) AS g
WHERE NOT EXISTS (SELECT 1 FROM billing.invoices i WHERE i.number = g)
ORDER BY g LIMIT 5
"""


def _line_detail(number, line_no, amount, named, recorded, found, ledger_sum, foreign) -> str:
    where = f"invoice {number} line {line_no}"
    if amount is None:
        return f"{where} is gone, but billing.invoice_entries still records {recorded} ledger entries on it"
    if found != recorded or found != named:
        return f"{where} names {named} ledger entries, but only {found} of them exist: entries were deleted"
    if ledger_sum != amount:
        return (
            f"{where} says {amount:+f}, but the {named} ledger entr{'y' if named == 1 else 'ies'} it names "
            f"sum to {ledger_sum:+f}: the invoice was altered after it was issued"
        )
    if foreign:
        return f"{where} names {foreign} ledger entries of another account"
    return f"{where} names {named} ledger entries, but billing.invoice_entries records {recorded} on it"


def _line_problems(conn: psycopg.Connection, invoice_id: int | None) -> list[LedgerProblem]:
    if invoice_id is not None:
        rows = conn.execute(_INVOICE_LINES, {"invoice": invoice_id}, prepare=False).fetchall()
        return [
            LedgerProblem(
                account,
                "invoice_line_mismatch",
                _line_detail(number, line_no, amount, named, recorded, found, ledger_sum, foreign),
                invoice_number=number,
            )
            for account, number, line_no, amount, named, recorded, found, ledger_sum, foreign in rows
        ]
    problems = []
    for account, number, line_no, unrecorded, unnamed, elsewhere in conn.execute(_ALL_LINE_LISTS, prepare=False):
        parts = [
            f"{unrecorded} entries it names are on no invoice in billing.invoice_entries" if unrecorded else "",
            f"{elsewhere} entries it names are recorded on another invoice or line" if elsewhere else "",
            f"billing.invoice_entries records {unnamed} entries on it that it does not name" if unnamed else "",
        ]
        detail = f"invoice {number} line {line_no}: " + "; ".join(p for p in parts if p)
        problems.append(LedgerProblem(account, "invoice_line_mismatch", detail, invoice_number=number))
    for account, number, line_no, amount, named, recorded, found, ledger_sum, foreign in conn.execute(
        _ALL_LINE_SUMS, prepare=False
    ):
        detail = _line_detail(number, line_no, amount, named, recorded, found, ledger_sum, foreign)
        problems.append(LedgerProblem(account, "invoice_line_mismatch", detail, invoice_number=number))
    return problems


def _total_problems(conn: psycopg.Connection, invoice_id: int | None) -> list[LedgerProblem]:
    problems = []
    for (
        account,
        number,
        opening,
        total,
        closing,
        lines_total,
        previous_id,
        prev_id,
        prev_number,
        prev_closing,
    ) in conn.execute(_TOTALS, {"invoice": invoice_id}, prepare=False):
        if total != lines_total:
            detail = f"invoice {number} says its total is {total:+f}, but its lines sum to {lines_total:+f}"
        elif closing != opening + total:
            detail = f"invoice {number} closes at {closing:f}, but opening {opening:f} + total {total:+f} is {opening + total:f}"
        elif opening != prev_closing:
            before = f"the previous invoice {prev_number} closed at" if prev_id else "it is the account's first: 0, not"
            detail = f"invoice {number} opens at {opening:f}, but {before} {prev_closing:f}"
        else:
            detail = f"invoice {number} names invoice id {previous_id} as the previous one, but it is {prev_id}"
        problems.append(LedgerProblem(account, "invoice_total_mismatch", detail, invoice_number=number))
    return problems


def _head_problems(conn: psycopg.Connection, invoice_id: int | None) -> list[LedgerProblem]:
    problems = []
    for account, number, head_id, head_seq, head_hash, found_id, found_account, found_seq, found_hash in conn.execute(
        _HEADS, {"invoice": invoice_id}, prepare=False
    ):
        if head_id is None:
            detail = f"invoice {number} has lines but records no chain head"
        elif found_id is None:
            detail = (
                f"invoice {number} recorded entry {head_id} (#{head_seq}) as {account}'s chain head at issue, but "
                "that entry is no longer in the ledger: entries were deleted"
            )
        else:
            detail = (
                f"invoice {number} recorded entry {head_id} (#{head_seq} of {account}, hash {(head_hash or '')[:16]}…) "
                f"as the chain head at issue; the ledger has it as #{found_seq} of {found_account}, hash "
                f"{found_hash[:16]}…: the ledger was rewritten or re-chained"
            )
        problems.append(LedgerProblem(account, "invoice_chain_head", detail, head_id, invoice_number=number))
    return problems


def numbering_problems(conn: psycopg.Connection) -> list[LedgerProblem]:
    """Issued numbers are 1 … n without a gap, and the counter's one row says n."""
    issued, last, counters, counter = conn.execute(_NUMBERING, prepare=False).fetchone()
    problems = []
    if issued != last:
        missing = [row[0] for row in conn.execute(_MISSING_NUMBERS, (last,), prepare=False)]
        shown = ", ".join(str(n) for n in missing) + (" …" if last - issued > len(missing) else "")
        problems.append(
            LedgerProblem(
                None,
                "invoice_number_gap",
                f"{issued} invoices are issued, but numbers run up to {last}: {last - issued} number(s) missing "
                f"({shown})",
            )
        )
    if counters != 1:
        problems.append(
            LedgerProblem(None, "invoice_counter", f"billing.invoice_number_counter has {counters} rows, not one")
        )
    elif counter != last:
        problems.append(
            LedgerProblem(
                None,
                "invoice_counter",
                f"billing.invoice_number_counter says the last number is {counter}, but the last issued invoice "
                f"is number {last}: the counter was moved outside issuing",
            )
        )
    return problems


def invoice_problems(conn: psycopg.Connection, invoice_id: int | None = None) -> list[LedgerProblem]:
    """Every issued invoice (or the one ``invoice_id``) against the ledger: lines, totals, chain head."""
    with conn.transaction():
        # One-off statements over millions of rows: compiling them (JIT) cost 2 s of 11 at a million entries.
        conn.execute("SET LOCAL jit = off")
        return _line_problems(conn, invoice_id) + _total_problems(conn, invoice_id) + _head_problems(conn, invoice_id)
