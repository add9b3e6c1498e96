"""History for the growth benchmark: N days before a measured hour, bulk-loaded in SQL.

The history is the warm-up hour the real pipeline has just produced, copied backwards in time:
every row of that hour in the usage tables (the ingestion tables ``billing.*`` with an ``hour``
column, and the dbt incremental tables ``analytics.*`` the hourly models read back, found by
their ``hour`` or ``day`` column) is inserted again with its hour (and ``*_at`` timestamps)
shifted by k hours. So the history holds the same accounts, deployments, prices and row
shapes the hourly queries touch, and no table or column is guessed by name.

Density: the last ``dense_days`` days are hourly (24 copies per day); older days, if any, get
one copy per day (the day's 00:00 hour) so that 365 days at 10,000 deployments fit on a
2-core machine's disk (hourly, ``metric_container_hours`` alone would hold 263 M rows). Pass
``dense_days >= days`` for a fully hourly history.

The ledger is loaded through ``billing_pipeline.ledger.post_entries`` (the batch path: hash
chain and balances as in production), one usage deduction per account, usage kind and hour
copied from the warm-up hour's deductions, hourly for the dense days and one per day (the
day's 24 hours in one amount) beyond. One top-up per account, posted first, equal to that
account's history deductions, leaves every balance where the warm-up hour left it, so the
measured hour sees the same account states whatever the history.
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal

import psycopg

from billing_pipeline.ledger import Entry, post_entries

# Tables with an hour that are not usage: their rows are events of the warm-up hour, not history.
NOT_HISTORY = (
    "credit_transactions",
    "topup",
    "alert",
    "lifecycle",
    "outbox",
    "invoice",
    "notification",
    "deliver",
    "sla",
    "cycle",
    "run",
)
STATEMENT_HOURS = 24 * 7  # shifted copies per INSERT: a week at a time keeps each statement bounded


def hour_text(hour: datetime) -> str:
    """The ledger reference's hour, as settlement writes it (``HOUR_TEXT`` in SQL)."""
    return hour.strftime("%Y-%m-%dT%H:%M:%S+00:00")


def shifts(days: int, dense_days: int) -> list[int]:
    """Hours back from the warm-up hour that get a copy: hourly for ``dense_days``, daily beyond."""
    dense = list(range(1, min(days, dense_days) * 24 + 1))
    sparse = [d * 24 for d in range(min(days, dense_days) + 1, days + 1)]
    return dense + sparse


def _columns(conn: psycopg.Connection, schema: str, table: str) -> list[tuple[str, str, bool]]:
    return conn.execute(
        """SELECT column_name, data_type,
                  is_identity = 'YES' OR coalesce(column_default, '') LIKE 'nextval%%' OR is_generated = 'ALWAYS'
           FROM information_schema.columns WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position""",
        (schema, table),
    ).fetchall()


# Daily usage rollups (dbt's int_*_daily), keyed by the UTC day as a timestamp: one copy per day.
DAY_TIMESTAMPS = ("usage_day",)


def history_tables(conn: psycopg.Connection, hour: datetime) -> list[tuple[str, str, str]]:
    """(schema, table, key column) of every usage table holding rows of the warm-up hour: hourly
    tables by ``hour``, daily ones by ``day`` (a date) or ``usage_day`` (the day's 00:00)."""
    found = conn.execute(
        """SELECT c.table_schema, c.table_name, c.column_name
           FROM information_schema.columns c
           JOIN information_schema.tables t USING (table_schema, table_name)
           WHERE t.table_type = 'BASE TABLE'
             AND c.table_schema IN ('billing', 'analytics', 'analytics_intermediate')
             AND ((c.column_name = 'hour' AND c.data_type = 'timestamp with time zone')
               OR (c.column_name = 'day' AND c.data_type = 'date')
               OR (c.column_name = ANY(%s) AND c.data_type = 'timestamp with time zone'))
           ORDER BY 1, 2, 3 DESC""",
        (list(DAY_TIMESTAMPS),),
    ).fetchall()
    out, seen = [], set()
    for schema, table, col in found:
        if (schema, table) in seen or any(word in table for word in NOT_HISTORY):
            continue
        value = hour.date() if col == "day" else hour  # the warm-up hour is a day's 00:00
        has_rows = conn.execute(
            f'SELECT EXISTS (SELECT 1 FROM "{schema}"."{table}" WHERE "{col}" = %s)', (value,)
        ).fetchone()[0]
        if has_rows:
            out.append((schema, table, col))
            seen.add((schema, table))
    return out


def _copy_statement(conn, schema: str, table: str, key: str) -> str:
    """INSERT ... SELECT of the warm-up hour's rows shifted by each ``k`` of ``%(shifts)s`` hours."""
    names, exprs = [], []
    for name, data_type, generated in _columns(conn, schema, table):
        if generated:
            continue  # serial / identity / generated columns fill themselves
        names.append(f'"{name}"')
        if data_type == "timestamp with time zone":
            exprs.append(f"r.\"{name}\" - s.k * interval '1 hour'")
        elif data_type == "date" and name == "day" and key == "hour":
            exprs.append("((r.hour - s.k * interval '1 hour') AT TIME ZONE 'UTC')::date")
        elif data_type == "date" and name == "day":
            exprs.append(f'(r."{name}" - (s.k / 24))::date')
        else:
            exprs.append(f'r."{name}"')
    return (
        f'INSERT INTO "{schema}"."{table}" ({", ".join(names)}) SELECT {", ".join(exprs)} '
        f'FROM "{schema}"."{table}" r CROSS JOIN unnest(%(shifts)s::int[]) AS s(k) WHERE r."{key}" = %(at)s'
    )


def load_usage_history(
    conn: psycopg.Connection, hour: datetime, days: int, dense_days: int, say=print
) -> dict[str, int]:
    """Copy ``hour``'s usage rows back over ``days`` days; returns rows inserted per table."""
    ks = shifts(days, dense_days)
    inserted: dict[str, int] = {}
    for schema, table, key in history_tables(conn, hour):
        statement = _copy_statement(conn, schema, table, key)
        # A daily table gets one copy per day back, whatever the density of the hourly ones.
        table_ks = ks if key == "hour" else [d * 24 for d in range(1, days + 1)]
        t0, n = time.monotonic(), 0
        try:
            for i in range(0, len(table_ks), STATEMENT_HOURS):
                cur = conn.execute(
                    statement,
                    {"shifts": table_ks[i : i + STATEMENT_HOURS], "at": hour.date() if key == "day" else hour},
                )
                n += cur.rowcount
            conn.commit()
        except psycopg.errors.UniqueViolation as exc:
            # A key that embeds the hour in text cannot be shifted generically: say so, load the rest.
            conn.rollback()
            say(f"    history: {schema}.{table} SKIPPED (unique key not shiftable: {exc.diag.constraint_name})")
            inserted[f"{schema}.{table}"] = -1
            continue
        inserted[f"{schema}.{table}"] = n
        say(f"    history: {schema}.{table}: {n:,} rows in {time.monotonic() - t0:.1f}s")
    return inserted


def load_ledger_history(
    conn: psycopg.Connection, hour: datetime, days: int, dense_days: int, say=print, batch: int = 200_000
) -> int:
    """Usage deductions back over ``days`` days through the batch path; returns entries posted."""
    rows = conn.execute(
        "SELECT account_id, reference ->> 'usage_kind', amount FROM billing.credit_transactions "
        "WHERE type = 'usage_deduction' AND reference ->> 'hour' = %s ORDER BY account_id, 2",
        (hour_text(hour),),
    ).fetchall()
    dense_ks = [k for k in shifts(days, dense_days) if k <= dense_days * 24]
    sparse_days = [d for d in range(min(days, dense_days) + 1, days + 1)]
    owed: dict[str, Decimal] = defaultdict(Decimal)
    for account, _kind, amount in rows:  # amount < 0
        owed[account] += -amount * (len(dense_ks) + 24 * len(sparse_days))
    t0 = time.monotonic()
    first_id = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM billing.credit_transactions").fetchone()[0]
    post_entries(conn, [Entry(a, "topup", total, f"history-topup:{a}:{days}d") for a, total in sorted(owed.items())])
    conn.commit()

    def entries():
        for k in dense_ks:
            at = hour_text(hour - timedelta(hours=k))
            for account, kind, amount in rows:
                yield Entry(
                    account,
                    "usage_deduction",
                    amount,
                    f"usage:{account}:{at}:{kind}",
                    {"hour": at, "usage_kind": kind, "account_id": account, "owed": str(-amount)},
                )
        for d in sparse_days:
            at = hour_text(hour - timedelta(days=d))
            for account, kind, amount in rows:
                yield Entry(
                    account,
                    "usage_deduction",
                    amount * 24,
                    f"usage:{account}:{at}:{kind}",
                    {"hour": at, "usage_kind": kind, "account_id": account, "owed": str(-amount * 24)},
                )

    posted, chunk = len(owed), []
    for entry in entries():
        chunk.append(entry)
        if len(chunk) >= batch:
            post_entries(conn, chunk)
            conn.commit()
            posted += len(chunk)
            chunk = []
    if chunk:
        post_entries(conn, chunk)
        conn.commit()
        posted += len(chunk)
    backdate_ledger_history(conn, first_id)
    seconds = time.monotonic() - t0
    say(f"    history: ledger: {posted:,} entries in {seconds:.1f}s ({posted / max(seconds, 1e-9):,.0f}/s)")
    return posted


def backdate_ledger_history(conn: psycopg.Connection, first_id: int) -> None:
    """Give the history's entries the time they would have been posted: each deduction an hour
    after the hour it settles, the top-ups at the start. Posted now, they would all fall on
    today, which no real ledger looks like (and which would put the whole history in the days
    the ledger rollup rebuilds every hour). The ledger refuses updates, so its triggers are off
    for this one statement on the scratch database."""
    with conn.transaction():
        conn.execute("ALTER TABLE billing.credit_transactions DISABLE TRIGGER USER")
        conn.execute(
            """UPDATE billing.credit_transactions t SET created_at = CASE
                   WHEN t.type = 'usage_deduction' THEN (t.reference ->> 'hour')::timestamptz + interval '1 hour'
                   ELSE (SELECT min((reference ->> 'hour')::timestamptz) FROM billing.credit_transactions
                         WHERE id >= %(first)s AND type = 'usage_deduction') END
               WHERE t.id >= %(first)s""",
            {"first": first_id},
        )
        conn.execute("ALTER TABLE billing.credit_transactions ENABLE TRIGGER USER")
