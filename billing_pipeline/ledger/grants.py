"""Credit grants: which grant paid for each debit (docs/rules/ledger.md, "Grants").

Every credit-adding entry opens a grant (``billing.grants``: kind, priority, expiry). Debits draw
on the account's open grants in burn order; what they take beyond them is debt, which the next
grant pays first; a ``grant_expiry`` takes what its grant has left; a positive reversal gives
back to the grants its entries drew from. Each movement is a row of ``billing.grant_draws``;
``grant_balances`` and ``grant_debts`` are caches of the result, like ``billing.credits``.

``apply_staged_grants`` runs inside ``post_entries``' transaction, after the batch's rows are written
(and loaded by ``stage_new_entries``, which also gives the posting their ids),
set-based: the batch is cut per account into *segments* (a run of debits valid against the same
grants, a run of new grants, a run of expiries, or one give-back), and each segment number is a
few statements across all accounts at once. Within a segment of debits the draws are the overlap
of two sets of cumulative intervals: the debits in sequence order against the open grants in
burn order; what lies beyond the last grant is debt. Processing a run of entries together gives
exactly what processing them one by one would, so the result does not depend on how the entries
were batched: ``rebuild_draws`` replays the whole ledger the same way into temporary tables,
and ``check_grants`` (``billing verify``) holds the stored rows to it. Migration 0014 fills the
tables for the entries posted before it with the same replay (``backfill``).

A posting's batch is staged by one range of ids (its ``COPY``'s) and loaded in one segment;
only its mixed accounts (more than one class, or a give-back) and those with expiring grants are
then cut, by the statement that cuts at expiries (``_SEGMENTS``), with the same rules: most
accounts of a posting have one kind of entry, and numbering every row with window functions
cost more than the rest of the staging. A replay, where most accounts are mixed, numbers them as
it loads them.

The SQL works on any DB-API cursor whose ``execute(sql, params)`` takes ``%(name)s``
parameters (psycopg 3 here, also inside Alembic), reading results with ``fetchall``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from billing_pipeline.ledger.problems import LedgerProblem

# Default priorities (docs/rules/ledger.md, "Grants"): lower burns first. A writer overrides them through the
# entry's reference.grant.priority.
DEFAULT_PRIORITY = {
    "promotional_grant": 10,
    "sla_credit": 20,
    "admin_adjustment": 30,
    "reversal": 30,  # what a reversal gives back beyond what its entries took (rare; see the rules)
    "topup": 50,
    "auto_topup": 50,
}
PAID_TYPES = ("topup", "auto_topup")


@dataclass(frozen=True)
class _Tables:
    grants: str
    balances: str
    debts: str
    draws: str


LIVE = _Tables("billing.grants", "billing.grant_balances", "billing.grant_debts", "billing.grant_draws")
REBUILT = _Tables("pg_temp.rb_grants", "pg_temp.rb_grant_balances", "pg_temp.rb_grant_debts", "pg_temp.rb_grant_draws")

# The work tables of one replay (the batch, cut into segments, and one segment's movements).
# The batch has no primary key: its rows are entries, unique by construction, and the statements
# join it by hash (maintaining the key cost more than a 100,000-entry posting's lookups saved).
# Not ON COMMIT DELETE ROWS: a replay may run on an autocommit connection (verify's rebuild).
_WORK_TABLES = """
CREATE TEMP TABLE IF NOT EXISTS grant_batch (
    id          bigint NOT NULL,
    account_id  text NOT NULL,
    account_seq bigint NOT NULL,
    type        text NOT NULL,
    amount      numeric NOT NULL,
    reference   jsonb NOT NULL,
    created_at  timestamptz NOT NULL,
    cls         char(1) NOT NULL,  -- C opens a grant, D debits, X expires a grant, R gives back
    t_valid     timestamptz NOT NULL,  -- a debit may use grants expiring after this
    seg         integer
);
CREATE TEMP TABLE IF NOT EXISTS grant_moves (
    pos            bigint GENERATED ALWAYS AS IDENTITY,
    account_id     text NOT NULL,
    source_id      bigint NOT NULL,  -- the entry that caused the movement
    entry_id       bigint NOT NULL,  -- the entry the draw row (or debt) belongs to
    grant_entry_id bigint,
    drawn          numeric NOT NULL DEFAULT 0,
    expired        numeric NOT NULL DEFAULT 0,
    debt           numeric NOT NULL DEFAULT 0
);
"""

_REBUILT_TABLES = """
DROP TABLE IF EXISTS pg_temp.rb_grants, pg_temp.rb_grant_balances, pg_temp.rb_grant_debts, pg_temp.rb_grant_draws;
CREATE TEMP TABLE rb_grants (LIKE billing.grants);
ALTER TABLE pg_temp.rb_grants ADD PRIMARY KEY (entry_id);
CREATE TEMP TABLE rb_grant_balances (LIKE billing.grant_balances INCLUDING DEFAULTS);
ALTER TABLE pg_temp.rb_grant_balances ADD PRIMARY KEY (grant_entry_id);
CREATE INDEX ON pg_temp.rb_grant_balances (account_id) WHERE remaining > 0;
CREATE TEMP TABLE rb_grant_debts (LIKE billing.grant_debts);
ALTER TABLE pg_temp.rb_grant_debts ADD PRIMARY KEY (entry_id);
CREATE INDEX ON pg_temp.rb_grant_debts (account_id, entry_id);
CREATE TEMP TABLE rb_grant_draws (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    entry_id bigint NOT NULL, grant_entry_id bigint NOT NULL, amount numeric(20, 6) NOT NULL
);
CREATE INDEX ON pg_temp.rb_grant_draws (entry_id);
"""

# Each entry's class. A negative reversal takes credits back (it reverses a credit): it draws
# like any debit.
_CLASS = """CASE
    WHEN t.type IN ('topup', 'auto_topup', 'promotional_grant', 'sla_credit')
         OR (t.type = 'admin_adjustment' AND t.amount > 0) THEN 'C'
    WHEN t.type = 'grant_expiry' THEN 'X'
    WHEN t.type = 'reversal' AND t.amount > 0 THEN 'R'
    ELSE 'D' END"""

# The batch's entries with their class and the time a debit is valid at.
_BATCH_ROWS = f"""
SELECT t.id, t.account_id, t.account_seq, t.type, t.amount, t.reference, t.created_at, {_CLASS} AS cls,
       -- "valid at": a usage deduction's usage hour, any other debit's posting time
       CASE WHEN t.type = 'usage_deduction'
            THEN coalesce(billing.ledger_entry_usage_hour(t.type, t.reference), t.created_at)
            ELSE t.created_at END AS t_valid
FROM {{source}}
"""
_BATCH_COLUMNS = "id, account_id, account_seq, type, amount, reference, created_at, cls, t_valid"

# The batch with each entry's segment as if no grant of its account expired (where the class
# changes, and at every give-back); _SEGMENTS then cuts the debits of the few accounts that have
# expiring grants.
_BATCH = f"""
INSERT INTO pg_temp.grant_batch ({_BATCH_COLUMNS}, seg)
SELECT {_BATCH_COLUMNS}, sum(brk) OVER (PARTITION BY account_id ORDER BY account_seq)
FROM (
    SELECT c.*, CASE WHEN lag(cls) OVER (PARTITION BY account_id ORDER BY account_seq) IS DISTINCT FROM cls
                          OR cls = 'R' THEN 1 ELSE 0 END AS brk
    FROM ({_BATCH_ROWS}) c
) k
{{returning}}
"""
# A posting's batch, every entry in segment 1: what the numbering above gives an account whose
# entries of the batch are all of one class other than a give-back, as most accounts' are in a
# posting (one kind of entry per account and run). _SEGMENTS then numbers the others' segments
# (``mixed``), with the same rules, updating only their rows: no sort and no windows over the
# whole batch (0.15-0.2 s of a 100,000-entry posting). A replay of the ledger, where most
# accounts are mixed, numbers them as it loads them (_BATCH).
_BATCH_ONE_SEGMENT = f"""
INSERT INTO pg_temp.grant_batch ({_BATCH_COLUMNS}, seg)
SELECT {_BATCH_COLUMNS}, 1 FROM ({_BATCH_ROWS}) c
{{returning}}
"""
# The entries a posting has just written: those of its accounts with an id above the highest id
# before its COPY (ids come from one ascending sequence, so every id the COPY took is higher).
# One range of the primary key, in the order the rows were written (~1,500 consecutive pages for
# 100,000 entries; an index range per account and sequence number visited a page per row), the
# accounts hashed. Another writer's rows in the range belong to other accounts: the posting
# holds the lock of each of its accounts.
_NEW_ENTRIES = (
    "billing.credit_transactions t WHERE t.id > %(after_id)s AND t.account_id IN (SELECT unnest(%(accounts)s::text[]))"
)


def _priority_sql(type_sql: str) -> str:
    cases = " ".join(f"WHEN '{t}' THEN {p}" for t, p in DEFAULT_PRIORITY.items())
    return f"CASE {type_sql} {cases} ELSE 50 END"


# The terms of the grants the batch's credit-adding entries open, and their balances (all left),
# in one statement: the balances are the grants just inserted (RETURNING), not a second pass
# over the batch joined to the grants. Overrides in reference.grant were checked when the entry
# was posted (entries._check_grant_terms); the guards below keep an older, unchecked reference
# from failing the statement (it gets the defaults instead). Both tables' statement-level
# reference checks (migration 0016) run after the statement, when its grants are visible.
_OPEN_GRANTS = f"""
WITH opened AS (
    INSERT INTO {{grants}} (entry_id, account_id, kind, source_type, priority, expires_at, granted, granted_at,
                            paid_amount, paid_currency)
    SELECT b.id, b.account_id,
           CASE WHEN b.type IN ('topup', 'auto_topup') THEN 'paid' ELSE 'free' END,
           b.type,
           CASE WHEN jsonb_typeof(b.reference -> 'grant' -> 'priority') = 'number'
                     AND (b.reference -> 'grant' ->> 'priority') ~ '^-?\\d{{1,7}}$'
                THEN (b.reference -> 'grant' ->> 'priority')::integer
                ELSE {_priority_sql("b.type")} END,
           CASE WHEN (b.reference -> 'grant' ->> 'expires_at') ~ '^\\d{{4}}-\\d{{2}}-\\d{{2}}[T ]\\d{{2}}:\\d{{2}}'
                THEN billing.grant_time(b.reference -> 'grant' ->> 'expires_at') END,
           b.amount, b.created_at,
           CASE WHEN b.type IN ('topup', 'auto_topup') THEN
               CASE WHEN (b.reference -> 'paid' ->> 'amount') ~ '^\\d{{1,20}}(\\.\\d{{1,12}})?$'
                    THEN (b.reference -> 'paid' ->> 'amount')::numeric
                    {{attempt_amount}} END END,
           CASE WHEN b.type IN ('topup', 'auto_topup') THEN b.reference -> 'paid' ->> 'currency' END
    FROM pg_temp.grant_batch b
    {{attempt_join}}
    WHERE b.cls = 'C'
    ORDER BY b.id
    RETURNING entry_id, account_id, granted
)
INSERT INTO {{balances}} (grant_entry_id, account_id, drawn, expired, remaining)
SELECT entry_id, account_id, 0, 0, granted FROM opened
"""
_ATTEMPT_JOIN = "LEFT JOIN billing.topup_attempts ta ON ta.ledger_entry_id = b.id AND ta.status = 'succeeded' AND b.type = 'auto_topup'"

# Segments: per account, a new one starts where the class changes, at every give-back (each is
# processed alone: what it gives beyond its entries opens a grant that pays debts at once), and
# among debits where an expiry of one of the account's grants falls between two debits' times
# (so every debit of a segment may use the same grants). _BATCH numbered the segments by the
# first two rules; this renumbers the accounts whose debits may be cut by the third: those with
# an expiring grant (most have none, and their numbers stand). A posting's batch was loaded in
# one segment (_BATCH_ONE_SEGMENT): this also numbers its mixed accounts, by all three rules.
_SEGMENTS = """
WITH expiring AS (
    SELECT g.account_id, g.expires_at FROM {grants} g
    WHERE g.expires_at IS NOT NULL
      AND g.account_id IN (SELECT account_id FROM pg_temp.grant_batch WHERE cls = 'D')
), mixed AS (
    -- a posting's batch (loaded in one segment): the accounts whose entries need more segments
    SELECT account_id FROM pg_temp.grant_batch
    WHERE {mixed}
    GROUP BY account_id HAVING min(cls) <> max(cls) OR bool_or(cls = 'R')
)
UPDATE pg_temp.grant_batch b SET seg = s.seg
FROM (
    SELECT id, sum(brk) OVER (PARTITION BY account_id ORDER BY account_seq) AS seg
    FROM (
        SELECT id, account_id, account_seq,
               CASE WHEN lag(cls) OVER w IS DISTINCT FROM cls OR cls = 'R'
                         OR lag(rnk) OVER w IS DISTINCT FROM rnk THEN 1 ELSE 0 END AS brk
        FROM (
            -- rnk: how many of the account's grants have expired by the debit's time
            SELECT x.id, x.account_id, x.account_seq, x.cls,
                   CASE WHEN x.cls = 'D' THEN count(e.expires_at) END AS rnk
            FROM pg_temp.grant_batch x
            LEFT JOIN expiring e ON x.cls = 'D' AND e.account_id = x.account_id AND e.expires_at <= x.t_valid
            WHERE x.account_id IN (SELECT account_id FROM expiring) OR x.account_id IN (SELECT account_id FROM mixed)
            GROUP BY x.id, x.account_id, x.account_seq, x.cls
        ) r
        WINDOW w AS (PARTITION BY account_id ORDER BY account_seq)
    ) k
) s
WHERE b.id = s.id AND b.seg IS DISTINCT FROM s.seg
"""

# Debits of a segment draw on the open grants valid at them, in burn order: priority, earliest
# expiry (none last), oldest. [hi - amount, hi) is each debit's interval of the segment's
# cumulative debits, [hi - remaining, hi) each grant's; a draw is their overlap.
_DEBITS = """
INSERT INTO pg_temp.grant_moves (account_id, source_id, entry_id, grant_entry_id, drawn, debt)
WITH d AS (
    SELECT b.id, b.account_id, -b.amount AS amount, b.t_valid,
           sum(-b.amount) OVER (PARTITION BY b.account_id ORDER BY b.account_seq) AS hi
    FROM pg_temp.grant_batch b
    WHERE b.seg = %(seg)s AND b.cls = 'D'
), acc AS (
    SELECT account_id, min(id) AS first_id, min(t_valid) AS t FROM d GROUP BY account_id
), g AS (
    -- each account's open grants, found from the account (OFFSET 0 keeps the lateral subquery a
    -- loop over the segment's accounts: as a join, right after a bulk posting the planner hashed
    -- every open grant of the ledger, 80 ms at 50,000 grants for accounts that had none)
    SELECT o.account_id, o.grant_entry_id, o.remaining,
           sum(o.remaining) OVER w AS hi, row_number() OVER w AS burn
    FROM acc CROSS JOIN LATERAL (
        SELECT gb.account_id, gb.grant_entry_id, gb.remaining, gr.priority, gr.expires_at
        FROM {balances} gb JOIN {grants} gr ON gr.entry_id = gb.grant_entry_id
        WHERE gb.account_id = acc.account_id AND gb.remaining > 0
          AND gr.entry_id < acc.first_id AND (gr.expires_at IS NULL OR gr.expires_at > acc.t)
        OFFSET 0
    ) o
    WINDOW w AS (PARTITION BY o.account_id ORDER BY o.priority, o.expires_at NULLS LAST, o.grant_entry_id)
), total AS (
    SELECT account_id, max(hi) AS total FROM g GROUP BY account_id
)
SELECT account_id, entry_id, entry_id, grant_entry_id, drawn, debt FROM (
    SELECT d.account_id, d.id AS entry_id, g.grant_entry_id,
           least(d.hi, g.hi) - greatest(d.hi - d.amount, g.hi - g.remaining) AS drawn, 0 AS debt, g.burn
    FROM d JOIN g ON g.account_id = d.account_id AND g.hi - g.remaining < d.hi AND d.hi - d.amount < g.hi
    UNION ALL
    SELECT d.account_id, d.id, NULL, 0, d.hi - greatest(d.hi - d.amount, coalesce(t.total, 0)), 9223372036854775807
    FROM d LEFT JOIN total t ON t.account_id = d.account_id
    WHERE d.hi > coalesce(t.total, 0)
) m
ORDER BY entry_id, burn
"""

# A grant_expiry takes what its grant has left, up to its amount, as expired; more than the grant
# has left (the grant was drawn on after the expiry's amount was read) is debt of the expiry.
_EXPIRIES = """
INSERT INTO pg_temp.grant_moves (account_id, source_id, entry_id, grant_entry_id, expired, debt)
WITH x AS (
    SELECT b.id, b.account_id, b.account_seq, -b.amount AS amount,
           CASE WHEN b.reference ->> 'grant_entry_id' ~ '^\\d{1,18}$'
                THEN (b.reference ->> 'grant_entry_id')::bigint END AS gid
    FROM pg_temp.grant_batch b
    WHERE b.seg = %(seg)s AND b.cls = 'X'
), y AS (
    SELECT x.id, x.account_id, x.amount, gb.grant_entry_id,
           least(x.amount, greatest(coalesce(gb.remaining, 0)
               - (sum(x.amount) OVER (PARTITION BY x.account_id, x.gid ORDER BY x.account_seq) - x.amount), 0)) AS took
    FROM x LEFT JOIN {balances} gb ON gb.grant_entry_id = x.gid AND gb.account_id = x.account_id AND x.gid < x.id
)
SELECT account_id, id, id, grant_entry_id, took, 0 FROM y WHERE grant_entry_id IS NOT NULL AND took > 0
UNION ALL
SELECT account_id, id, id, NULL, 0, amount - coalesce(took, 0) FROM y WHERE amount > coalesce(took, 0)
ORDER BY 2, 4 NULLS LAST
"""

# A positive reversal gives back what its entries took: the entry it reverses and, for a usage
# deduction, every entry settling the same account, hour and usage kind before it (the members).
# First it cancels the members' outstanding debt (newest debit first), then it returns credits
# to the grants, most recently drawn first: the members' draws, newest first, less what earlier
# reversals of the members gave back already (a stack popped from the top).
_GIVE_BACKS = """
INSERT INTO pg_temp.grant_moves (account_id, source_id, entry_id, grant_entry_id, drawn, debt)
WITH r AS (
    SELECT b.id, b.account_id, b.amount,
           CASE WHEN b.reference ->> 'reverses' ~ '^\\d{1,18}$' THEN (b.reference ->> 'reverses')::bigint END AS reverses
    FROM pg_temp.grant_batch b
    WHERE b.seg = %(seg)s AND b.cls = 'R'
), target AS (
    SELECT r.id, r.account_id, r.reverses, o.type AS o_type, o.reference AS o_ref,
           (o.type = 'usage_deduction' AND o.reference ? 'usage_kind') AS usage
    FROM r JOIN billing.credit_transactions o ON o.id = r.reverses AND o.account_id = r.account_id
), members AS (
    SELECT tg.id AS rid, m.id AS mid
    FROM target tg
    JOIN billing.credit_transactions m
      ON m.reference ->> 'hour' = tg.o_ref ->> 'hour' AND m.account_id = tg.account_id
     AND m.type IN ('usage_deduction', 'reversal') AND m.reference ? 'usage_kind'
     AND m.reference ->> 'usage_kind' = tg.o_ref ->> 'usage_kind' AND m.id < tg.id
    WHERE tg.usage
    UNION ALL
    SELECT tg.id, tg.reverses FROM target tg WHERE NOT tg.usage
    UNION ALL
    SELECT tg.id, p.id
    FROM target tg
    JOIN billing.credit_transactions p
      ON p.account_id = tg.account_id AND p.type = 'reversal' AND p.reference ->> 'reverses' = tg.reverses::text
     AND p.id < tg.id
    WHERE NOT tg.usage
), debts AS (
    SELECT mb.rid, d.entry_id, d.outstanding AS amount,
           sum(d.outstanding) OVER (PARTITION BY mb.rid ORDER BY d.entry_id DESC) AS hi
    FROM members mb JOIN {debts} d ON d.entry_id = mb.mid
), debt_total AS (
    SELECT rid, max(hi) AS total FROM debts GROUP BY rid
), given AS (
    SELECT mb.rid, -sum(dr.amount) AS amount
    FROM members mb JOIN {draws} dr ON dr.entry_id = mb.mid
    WHERE dr.amount < 0
    GROUP BY mb.rid
), stack AS (
    SELECT mb.rid, dr.id, dr.grant_entry_id, dr.amount,
           sum(dr.amount) OVER (PARTITION BY mb.rid ORDER BY dr.id DESC) - coalesce(gv.amount, 0) AS hi
    FROM members mb
    JOIN {draws} dr ON dr.entry_id = mb.mid AND dr.amount > 0
    LEFT JOIN given gv ON gv.rid = mb.rid
), sinks AS (
    SELECT rid, entry_id AS debit_id, NULL::bigint AS grant_entry_id, hi - amount AS lo, hi, 0 AS phase, -entry_id AS ord
    FROM debts
    UNION ALL
    SELECT s.rid, NULL, s.grant_entry_id, coalesce(t.total, 0) + greatest(s.hi - s.amount, 0),
           coalesce(t.total, 0) + s.hi, 1, -s.id
    FROM stack s LEFT JOIN debt_total t ON t.rid = s.rid
    WHERE s.hi > 0
)
SELECT r.account_id, r.id, coalesce(s.debit_id, r.id), s.grant_entry_id,
       CASE WHEN s.grant_entry_id IS NOT NULL THEN -(least(r.amount, s.hi) - s.lo) ELSE 0 END,
       CASE WHEN s.grant_entry_id IS NULL THEN -(least(r.amount, s.hi) - s.lo) ELSE 0 END
FROM r JOIN sinks s ON s.rid = r.id AND s.lo < r.amount
ORDER BY r.id, s.phase, s.ord
"""

# What a give-back returns beyond what its entries took opens a free grant (source_type reversal).
_EXCESS_GRANTS = f"""
INSERT INTO {{grants}} (entry_id, account_id, kind, source_type, priority, expires_at, granted, granted_at)
SELECT b.id, b.account_id, 'free', 'reversal', {DEFAULT_PRIORITY["reversal"]}, NULL,
       b.amount - coalesce((SELECT sum(-m.drawn - m.debt) FROM pg_temp.grant_moves m WHERE m.source_id = b.id), 0),
       b.created_at
FROM pg_temp.grant_batch b
WHERE b.seg = %(seg)s AND b.cls = 'R'
  AND b.amount > coalesce((SELECT sum(-m.drawn - m.debt) FROM pg_temp.grant_moves m WHERE m.source_id = b.id), 0)
"""

_EXCESS_BALANCES = """
INSERT INTO {balances} (grant_entry_id, account_id, drawn, expired, remaining)
SELECT g.entry_id, g.account_id, 0, 0, g.granted
FROM {grants} g JOIN pg_temp.grant_batch b ON b.id = g.entry_id
WHERE b.seg = %(seg)s AND b.cls = 'R'
"""

# New grants pay the account's debts first: oldest debit first, the grants in entry order.
_PAY_DEBTS = """
INSERT INTO pg_temp.grant_moves (account_id, source_id, entry_id, grant_entry_id, drawn, debt)
WITH ng AS (
    SELECT g.account_id, g.entry_id, gb.remaining AS amount,
           sum(gb.remaining) OVER (PARTITION BY g.account_id ORDER BY g.entry_id) AS hi
    FROM pg_temp.grant_batch b
    JOIN {grants} g ON g.entry_id = b.id
    JOIN {balances} gb ON gb.grant_entry_id = g.entry_id
    WHERE b.seg = %(seg)s AND b.cls IN ('C', 'R')
      -- only accounts in debt (whole accounts: each account's running sums stay the same)
      AND EXISTS (SELECT 1 FROM {debts} x WHERE x.account_id = b.account_id)
), debts AS (
    SELECT d.account_id, d.entry_id, d.outstanding AS amount,
           sum(d.outstanding) OVER (PARTITION BY d.account_id ORDER BY d.entry_id) AS hi
    FROM {debts} d
    WHERE d.account_id IN (SELECT account_id FROM ng)
)
SELECT ng.account_id, ng.entry_id, debts.entry_id, ng.entry_id,
       least(ng.hi, debts.hi) - greatest(ng.hi - ng.amount, debts.hi - debts.amount),
       -(least(ng.hi, debts.hi) - greatest(ng.hi - ng.amount, debts.hi - debts.amount))
FROM ng JOIN debts ON debts.account_id = ng.account_id
 AND debts.hi - debts.amount < ng.hi AND ng.hi - ng.amount < debts.hi
ORDER BY ng.entry_id, debts.entry_id
"""

# The movements of a segment applied to the tables: draw rows (one per entry and grant), grant
# balances, debts. Then the movements are cleared for the next segment.
_WRITE_DRAWS = """
INSERT INTO {draws} (entry_id, grant_entry_id, amount)
SELECT entry_id, grant_entry_id, sum(drawn + expired)
FROM pg_temp.grant_moves WHERE grant_entry_id IS NOT NULL
GROUP BY entry_id, grant_entry_id HAVING sum(drawn + expired) <> 0
ORDER BY min(pos)
"""
_UPDATE_BALANCES = """
UPDATE {balances} gb
SET drawn = gb.drawn + m.drawn, expired = gb.expired + m.expired, remaining = gb.remaining - m.drawn - m.expired
FROM (SELECT grant_entry_id, sum(drawn) AS drawn, sum(expired) AS expired
      FROM pg_temp.grant_moves WHERE grant_entry_id IS NOT NULL GROUP BY grant_entry_id) m
WHERE gb.grant_entry_id = m.grant_entry_id
"""
# MERGE, not INSERT .. ON CONFLICT: most debts are new (a batch's usage beyond its grants),
# and a speculative insertion per row cost twice the join (0.3 s of 0.4 s for 50,000 debts).
# The batch's accounts are locked, so no other writer adds a debt of these entries meanwhile.
_MERGE_DEBTS = """
MERGE INTO {debts} AS d
USING (
    SELECT entry_id, min(account_id) AS account_id, sum(debt) AS debt
    FROM pg_temp.grant_moves WHERE debt <> 0 GROUP BY entry_id
) m ON d.entry_id = m.entry_id
WHEN MATCHED AND d.outstanding + m.debt = 0 THEN DELETE
WHEN MATCHED THEN UPDATE SET outstanding = d.outstanding + m.debt
WHEN NOT MATCHED AND m.debt <> 0 THEN INSERT (entry_id, account_id, outstanding) VALUES (m.entry_id, m.account_id, m.debt)
"""
# After a segment's debits and expiries only, their debts are their own (new entries, no debt row
# yet), so inserted without looking for one (the join with every debt of the ledger was most of
# the MERGE's time beyond the insert). A debt row already there would be refused by its primary
# key, not overwritten.
_INSERT_NEW_DEBTS = """
INSERT INTO {debts} (entry_id, account_id, outstanding)
SELECT entry_id, min(account_id), sum(debt)
FROM pg_temp.grant_moves WHERE debt <> 0 GROUP BY entry_id HAVING sum(debt) <> 0
"""
_CLEAR_MOVES = "DELETE FROM pg_temp.grant_moves"
_APPLY = [_WRITE_DRAWS, _UPDATE_BALANCES, _MERGE_DEBTS, _CLEAR_MOVES]
_APPLY_NEW_DEBTS = [_WRITE_DRAWS, _UPDATE_BALANCES, _INSERT_NEW_DEBTS, _CLEAR_MOVES]


def _sql(text: str, tables: _Tables, **tokens: str) -> str:
    """``text`` with its ``{grants}``, ``{balances}``, ``{debts}``, ``{draws}`` (and other) tokens
    replaced: not ``str.format``, whose braces would clash with the regular expressions."""
    for name, value in {**vars(tables), **tokens}.items():
        text = text.replace("{" + name + "}", value)
    return text


def _run(cur: Any, sql: str, tables: _Tables, params: dict | None = None, **tokens: str) -> None:
    # Planned on every call (see posting.py's _NO_GENERIC_PLANS): batch sizes vary by 10,000x.
    extra = {"prepare": False} if _is_psycopg3(cur) else {}
    cur.execute(_sql(sql, tables, **tokens), params or {}, **extra)


def _is_psycopg3(cur: Any) -> bool:
    return type(cur).__module__.startswith("psycopg.")


def _replay(cur: Any, tables: _Tables, where: str, params: dict, *, attempts: bool = False) -> None:
    """Replay the entries selected by ``where`` (over ``billing.credit_transactions t``) into
    ``tables``: open their grants, then each segment in turn."""
    _load(cur, tables, f"billing.credit_transactions t WHERE {where}", params)
    _process(cur, tables, attempts=attempts)


def _load(
    cur: Any, tables: _Tables, source: str, params: dict, returning: str = "", *, one_segment: bool = False
) -> None:
    """Load the entries of ``source`` into ``pg_temp.grant_batch``: numbered in segments, or all
    in segment 1 (``one_segment``: then ``_process`` must be told, to number the mixed accounts)."""
    cur.execute(_WORK_TABLES)
    cur.execute("DELETE FROM pg_temp.grant_batch")
    cur.execute("DELETE FROM pg_temp.grant_moves")
    _run(cur, _BATCH_ONE_SEGMENT if one_segment else _BATCH, tables, params, source=source, returning=returning)


_SEGMENTS_SCANNED = 3  # up to this many segments, no index on the batch's segment numbers
_SAMPLED_ROWS = 3_000  # statistics of a larger batch from a sample of this many rows


def _analyze_batch(cur: Any, rows: int) -> None:
    """Statistics of the loaded batch: temporary tables get none by themselves, and without them
    every segment's plan guesses the batch's size (a replay of the whole ledger has thousands
    of segments). The columns the segments' statements filter, group and join the batch on are
    enough (the whole row's, its references' included, took twice as long), and so is a sample
    of 3,000 rows (the default 30,000 took 55 ms of a 100,000-entry posting, this 10 ms)."""
    if rows <= _SAMPLED_ROWS:
        cur.execute("ANALYZE pg_temp.grant_batch (seg, cls, account_id, id)")
        return
    cur.execute(
        "SELECT current_setting('default_statistics_target'), set_config('default_statistics_target', '10', true)"
    )
    previous = cur.fetchall()[0][0]
    cur.execute("ANALYZE pg_temp.grant_batch (seg, cls, account_id, id)")
    cur.execute("SELECT set_config('default_statistics_target', %(previous)s, true)", {"previous": previous})


def _process(cur: Any, tables: _Tables, *, attempts: bool = False, loaded_in_one_segment: bool = False) -> None:
    """The loaded batch (``pg_temp.grant_batch``) into ``tables``: open its grants, then each
    segment in turn. ``loaded_in_one_segment``: the batch was loaded by ``_load(one_segment=True)``."""
    _run(
        cur,
        _OPEN_GRANTS,
        tables,
        attempt_join=_ATTEMPT_JOIN if attempts else "",
        attempt_amount="WHEN ta.id IS NOT NULL THEN ta.amount" if attempts else "",
    )
    _run(cur, _SEGMENTS, tables, mixed="true" if loaded_in_one_segment else "false")
    # The segments and their classes: pairs counted first (hashed, a few rows), then per segment
    # (not string_agg(DISTINCT) over the whole batch, which sorted it).
    cur.execute(
        "SELECT seg, string_agg(cls::text, ''), sum(n) FROM "
        "(SELECT seg, cls, count(*) AS n FROM pg_temp.grant_batch GROUP BY seg, cls) s GROUP BY seg ORDER BY seg"
    )
    listed = cur.fetchall()
    segments = [(seg, classes) for seg, classes, _ in listed]
    batch_rows = sum(n for _, _, n in listed)
    _analyze_batch(cur, batch_rows)
    # Each segment's statements read its rows of the batch: by an index when there are many
    # segments (a replay of the ledger), by a scan when there are a few (a posting: maintaining
    # the index row by row cost more than the scans it saved). Built after the batch is loaded.
    indexed = len(segments) > _SEGMENTS_SCANNED
    if indexed:
        cur.execute("CREATE INDEX grant_batch_seg_idx ON pg_temp.grant_batch (seg)")
    for seg, classes in segments:
        params = {"seg": seg}
        if "D" in classes:
            _run(cur, _DEBITS, tables, params)
        if "X" in classes:
            _run(cur, _EXPIRIES, tables, params)
        if "R" in classes:
            _run(cur, _GIVE_BACKS, tables, params)
            _run(cur, _EXCESS_GRANTS, tables, params)  # reads the give-backs' movements
            _run(cur, _EXCESS_BALANCES, tables, params)
        if classes != "C":
            for statement in _APPLY if "R" in classes else _APPLY_NEW_DEBTS:
                _run(cur, statement, tables)
        if "C" in classes or "R" in classes:
            _run(cur, _PAY_DEBTS, tables, params)
            for statement in _APPLY:
                _run(cur, statement, tables)
    if indexed:
        cur.execute("DROP INDEX pg_temp.grant_batch_seg_idx")
    # Emptied for the next replay: a large batch truncated (deleting 100,000 rows one by one took
    # 20-30 ms), a small one deleted (a truncation makes new files: slower for a few rows).
    cur.execute("TRUNCATE pg_temp.grant_batch" if batch_rows > _SAMPLED_ROWS else "DELETE FROM pg_temp.grant_batch")


def stage_new_entries(cur: Any, after_id: int, accounts: list[str]) -> list[tuple[int, str, int]]:
    """The posting's first step: the entries it has just written (those of ``accounts`` with an
    id above ``after_id``, the highest id before its ``COPY``, read after the accounts were
    locked) loaded for ``apply_staged_grants``. Returns each one's ``(id, account_id,
    account_seq)``, in no particular order: the ids the database gave, read once for both."""
    _load(
        cur,
        LIVE,
        _NEW_ENTRIES,
        {"after_id": after_id, "accounts": accounts},
        returning="RETURNING id, account_id, account_seq",
        one_segment=True,
    )
    return cur.fetchall()


def apply_staged_grants(cur: Any) -> None:
    """The posting hook: grants, draws, balances and debts for the entries staged by
    ``stage_new_entries``, in the caller's transaction. Called by ``post_entries``."""
    _process(cur, LIVE, loaded_in_one_segment=True)


def apply_grants(cur: Any, entry_ids: list[int]) -> None:
    """Grants, draws, balances and debts for entries just written (ids in sequence order per
    account), in the caller's transaction: what ``post_entries`` does through ``stage_new_entries``
    and ``apply_staged_grants``, for entries given by their ids."""
    if entry_ids:
        _replay(cur, LIVE, "t.id = ANY(%(ids)s::bigint[])", {"ids": list(entry_ids)})


def backfill(cur: Any) -> None:
    """Migration 0014: the grants and draws of every entry already posted, replaying the ledger
    in order. A paid top-up without ``reference.paid`` takes the paid amount from its top-up attempt."""
    _replay(cur, LIVE, "true", {}, attempts=True)


def rebuild_draws(conn: Any, account_ids: list[str] | None = None) -> list[tuple[int, int, Decimal]]:
    """Replay the ledger (of ``account_ids``, or all) from the entries and their grants' terms
    into temporary tables (``pg_temp.rb_*``, kept until the next rebuild in this session) and
    return the draws as ``(entry_id, grant_entry_id, amount)``, by entry, each entry's in the order
    they were made (the order of ``billing.grant_draws`` ordered by ``entry_id, id``)."""
    cur = conn.cursor()
    cur.execute(_REBUILT_TABLES)
    if account_ids is None:
        _replay(cur, REBUILT, "true", {})
    else:
        _replay(cur, REBUILT, "t.account_id = ANY(%(accounts)s::text[])", {"accounts": list(account_ids)})
    cur.execute("SELECT entry_id, grant_entry_id, amount FROM pg_temp.rb_grant_draws ORDER BY entry_id, id")
    return [tuple(row) for row in cur.fetchall()]


# What verify compares: each query returns (account_id, grant or entry id, detail) per difference.
_TERMS_DIFFER = """
SELECT coalesce(s.account_id, r.account_id), coalesce(s.entry_id, r.entry_id),
       CASE WHEN s.entry_id IS NULL THEN 'entry ' || r.entry_id || ' adds credits but has no grant'
            WHEN r.entry_id IS NULL THEN 'grant ' || s.entry_id || ' has no credit-adding ledger entry behind it'
            ELSE 'grant ' || s.entry_id || ' says ' || concat_ws(' ', s.kind, s.source_type, 'priority', s.priority,
                 'expires', coalesce(s.expires_at::text, 'never'), 'granted', s.granted)
                 || ', its ledger entry says ' || concat_ws(' ', r.kind, r.source_type, 'priority', r.priority,
                 'expires', coalesce(r.expires_at::text, 'never'), 'granted', r.granted) END
FROM (SELECT * FROM billing.grants WHERE {accounts}) s
FULL JOIN pg_temp.rb_grants r ON r.entry_id = s.entry_id
WHERE s.entry_id IS NULL OR r.entry_id IS NULL
   OR (s.account_id, s.kind, s.source_type, s.priority, s.granted, s.granted_at)
      IS DISTINCT FROM (r.account_id, r.kind, r.source_type, r.priority, r.granted, r.granted_at)
   OR s.expires_at IS DISTINCT FROM r.expires_at
ORDER BY 2
"""

_DRAWS_DIFFER = """
WITH s AS (
    SELECT d.grant_entry_id, d.entry_id, sum(d.amount) AS amount, count(*) AS n
    FROM billing.grant_draws d JOIN billing.grants g ON g.entry_id = d.grant_entry_id
    WHERE {accounts_g}
    GROUP BY 1, 2
), r AS (
    SELECT grant_entry_id, entry_id, sum(amount) AS amount, count(*) AS n FROM pg_temp.rb_grant_draws GROUP BY 1, 2
)
SELECT (SELECT account_id FROM billing.grants g WHERE g.entry_id = coalesce(s.grant_entry_id, r.grant_entry_id)),
       coalesce(s.grant_entry_id, r.grant_entry_id),
       'grant ' || coalesce(s.grant_entry_id, r.grant_entry_id) || ': entry ' || coalesce(s.entry_id, r.entry_id)
       || ' drew ' || coalesce(s.amount::text, 'nothing') || coalesce(' in ' || nullif(s.n, 1) || ' rows', '')
       || ' from it, the rebuild from the ledger says ' || coalesce(r.amount::text, 'nothing')
FROM s FULL JOIN r ON r.grant_entry_id = s.grant_entry_id AND r.entry_id = s.entry_id
WHERE s.amount IS DISTINCT FROM r.amount OR s.n IS DISTINCT FROM r.n
ORDER BY 2, coalesce(s.entry_id, r.entry_id)
"""

_BALANCES_DIFFER = """
SELECT coalesce(s.account_id, r.account_id), coalesce(s.grant_entry_id, r.grant_entry_id),
       'grant ' || coalesce(s.grant_entry_id, r.grant_entry_id) || ': grant_balances says drawn '
       || coalesce(s.drawn::text, '-') || ', expired ' || coalesce(s.expired::text, '-') || ', remaining '
       || coalesce(s.remaining::text, '-') || '; the rebuild says drawn ' || coalesce(r.drawn::text, '-')
       || ', expired ' || coalesce(r.expired::text, '-') || ', remaining ' || coalesce(r.remaining::text, '-')
FROM (SELECT * FROM billing.grant_balances WHERE {accounts}) s
FULL JOIN pg_temp.rb_grant_balances r ON r.grant_entry_id = s.grant_entry_id
WHERE (s.account_id, s.drawn, s.expired, s.remaining) IS DISTINCT FROM (r.account_id, r.drawn, r.expired, r.remaining)
ORDER BY 2
"""

_DEBTS_DIFFER = """
SELECT coalesce(s.account_id, r.account_id), coalesce(s.entry_id, r.entry_id),
       'entry ' || coalesce(s.entry_id, r.entry_id) || ': grant_debts says ' || coalesce(s.outstanding::text, 'no debt')
       || ' outstanding, the rebuild says ' || coalesce(r.outstanding::text, 'no debt')
FROM (SELECT * FROM billing.grant_debts WHERE {accounts}) s
FULL JOIN pg_temp.rb_grant_debts r ON r.entry_id = s.entry_id
WHERE (s.account_id, s.outstanding) IS DISTINCT FROM (r.account_id, r.outstanding)
ORDER BY 2
"""

# The identity: balance = remaining of the open grants - debt, per account. One aggregation over
# the three tables, never a join of them: right after a bulk posting the grant tables have no
# statistics yet, and the planner joined them as if they held 200 rows (a nested loop over
# 20,000 x 20,000 accounts: 15 s on the hourly path at 100,000 deployments).
_IDENTITY = """
SELECT account_id, sum(balance), sum(remaining), sum(debt)
FROM (
    SELECT account_id, balance, 0 AS remaining, 0 AS debt FROM billing.credits WHERE {accounts}
    UNION ALL SELECT account_id, 0, remaining, 0 FROM billing.grant_balances WHERE {accounts}
    UNION ALL SELECT account_id, 0, 0, outstanding FROM billing.grant_debts WHERE {accounts}
) parts
GROUP BY account_id
HAVING sum(balance) <> sum(remaining) - sum(debt)
ORDER BY 1
"""


def identity_mismatches(
    cur: Any, accounts: str = "true", params: dict | None = None, limit: int | None = None
) -> list[tuple[str, Decimal, Decimal, Decimal]]:
    """Accounts whose balance (``billing.credits``) is not their grants' remaining minus their
    debt: ``(account, balance, remaining, debt)`` in account order, at most ``limit``; ``accounts``
    is a filter on ``account_id`` (``params`` its parameters)."""
    query = _sql(_IDENTITY, LIVE, accounts=accounts)
    if limit is not None:
        query += f"LIMIT {int(limit)}\n"
    cur.execute(query, params or {})
    return cur.fetchall()


@dataclass(frozen=True)
class GrantCheck:
    """What ``check_grants`` found, and how much it looked at."""

    problems: list[LedgerProblem]
    grants: int
    draws: int


def check_grants(conn: Any, account_ids: list[str] | None = None) -> GrantCheck:
    """``billing verify``'s grant checks: the grants' terms, the draws, the grant balances and the
    debts equal the rebuild from the ledger, and every account's balance equals the remaining of
    its grants less its debt. Each finding names the grant (or the debit) and the account."""
    rebuilt = rebuild_draws(conn, account_ids)
    if account_ids is None:
        accounts, accounts_g, params = "true", "true", {}
    else:
        accounts, accounts_g = "account_id = ANY(%(accounts)s::text[])", "g.account_id = ANY(%(accounts)s::text[])"
        params = {"accounts": list(account_ids)}
    cur = conn.cursor()
    problems: list[LedgerProblem] = []
    for kind, query in (
        ("grant_terms", _TERMS_DIFFER),
        ("grant_draws", _DRAWS_DIFFER),
        ("grant_balance", _BALANCES_DIFFER),
        ("grant_debt", _DEBTS_DIFFER),
    ):
        cur.execute(_sql(query, LIVE, accounts=accounts, accounts_g=accounts_g), params)
        for account, about, detail in cur.fetchall():
            problems.append(LedgerProblem(account, kind, detail, about))
    for account, balance, remaining, debt in identity_mismatches(cur, accounts, params):
        problems.append(
            LedgerProblem(
                account,
                "grant_identity",
                f"the balance is {balance}, but its grants have {remaining} left and it owes {debt} of debt "
                f"({remaining} - {debt} = {remaining - debt})",
            )
        )
    cur.execute(f"SELECT count(*) FROM billing.grants WHERE {accounts}", params)
    grants = cur.fetchall()[0][0]
    return GrantCheck(problems, grants, len(rebuilt))


@dataclass(frozen=True)
class OpenGrant:
    """A grant with credits left, as a debit at ``at`` would see it (in burn order)."""

    entry_id: int
    kind: str
    source_type: str
    priority: int
    expires_at: datetime | None
    granted: Decimal
    remaining: Decimal


def open_grants(conn: Any, account_id: str, at: datetime) -> list[OpenGrant]:
    """The account's grants a debit valid at ``at`` would draw on, in burn order."""
    cur = conn.cursor()
    cur.execute(
        """
        SELECT g.entry_id, g.kind, g.source_type, g.priority, g.expires_at, g.granted, b.remaining
        FROM billing.grant_balances b JOIN billing.grants g ON g.entry_id = b.grant_entry_id
        WHERE b.account_id = %(account)s AND b.remaining > 0
          AND (g.expires_at IS NULL OR g.expires_at > %(at)s)
        ORDER BY g.priority, g.expires_at NULLS LAST, g.entry_id
        """,
        {"account": account_id, "at": at},
    )
    return [OpenGrant(*row) for row in cur.fetchall()]
