"""Month-end: close one month for 2,000 accounts through Dagster (aim: under 120 s).

Usage: .venv/bin/python bench/month_end_bench.py [--accounts N] [--month YYYY-MM] [--reuse] [--keep]

Uses a scratch database `satusky_bench_month_end` on BILLING_BENCH_SERVER (default the local
server 127.0.0.1:5432), copied from a set-up database `satusky_bench_month_end_setup` that is
built first (about 9 minutes here; `--reuse` keeps and reuses it between runs) and dropped at the
end unless --keep. Set-up
(not timed): N accounts with one deployment each; a month of hourly priced usage in a stand-in
`analytics.fct_priced_usage` (cpu and memory per deployment and hour, a rented machine for every
other account), settled hour by hour into the ledger by the real deduction (a usage deduction per
account, hour and kind: about 2.2 M entries for 2,000 accounts and 31 days); probe minutes for
every deployment and hour (every 10th deployment at 98.7 %, every 50th without probe data for a
day), grace intervals for 1 % of the accounts; a top-up per account.

Timed: `run_month_end` (the `monthly_invoice_job` run: SLA credits, then invoices), then the
same again (nothing new to issue or post).
"""

from __future__ import annotations

import argparse
import os

# The scratch database's entries are chained under a key of their own unless one is given.
os.environ.setdefault("BILLING_LEDGER_KEY", "bench-scratch-ledger-key-not-a-secret-0123456789")
import sys
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from billing_pipeline.db.connection import make_conninfo_url
from billing_pipeline.db.migrate import upgrade
from billing_pipeline.invoicing.months import month_bounds, parse_month
from billing_pipeline.ledger import Entry, post_entries
from tests.support.month_end import PRICED_USAGE_DDL, USAGE_SQL, settle

SERVER = os.environ.get("BILLING_BENCH_SERVER", "127.0.0.1:5432")
DB = "satusky_bench_month_end"


def server(dbname: str) -> str:
    host, port = SERVER.rsplit(":", 1)
    return make_conninfo_url(host=host, port=int(port), dbname=dbname)


SETUP_DB = f"{DB}_setup"


def drop(*names: str) -> None:
    with psycopg.connect(server("postgres"), autocommit=True) as c:
        for name in names or (DB, f"{DB}_dagster"):
            c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def set_up_database(n: int, month: str, reuse: bool) -> None:
    """The set-up database (built unless --reuse finds it with N accounts), then a copy to close."""
    setup_url = server(SETUP_DB)
    ready = False
    if reuse:
        try:
            with psycopg.connect(setup_url) as conn:
                ready = conn.execute("SELECT count(*) FROM billing.accounts").fetchone()[0] == n
        except psycopg.OperationalError:
            ready = False
    if not ready:
        drop(SETUP_DB)
        upgrade(setup_url)
        set_up(setup_url, n, month)
    drop()
    with psycopg.connect(server("postgres"), autocommit=True) as c:
        c.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(DB), sql.Identifier(SETUP_DB)))


def set_up(url: str, n: int, month: str) -> None:
    start, end = month_bounds(parse_month(month))
    accounts = [f"acct-{i:05d}" for i in range(n)]
    deployments = [f"dep-{i:05d}" for i in range(n)]
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        conn.execute(PRICED_USAGE_DDL)
        with cur.copy("COPY billing.accounts (id, name, created_at) FROM STDIN") as copy:
            for a in accounts:
                copy.write_row((a, f"Account {a}", start - timedelta(days=60)))
        with cur.copy("COPY billing.deployments (id, account_id, namespace, name, created_at) FROM STDIN") as copy:
            for a, d in zip(accounts, deployments):
                copy.write_row((d, a, f"{a}-prod", "web", start - timedelta(days=60)))
        t0 = time.perf_counter()
        conn.execute(
            USAGE_SQL,
            {"start": start, "end": end, "accounts": accounts, "deployments": deployments, "renters": accounts[::2]},
        )
        conn.execute(
            "INSERT INTO billing.metric_hours (hour, complete) SELECT h, true FROM generate_series(%s::timestamptz, "
            "%s::timestamptz - interval '1 hour', interval '1 hour') h",
            (start, end),
        )
        # Probes: all up; every 10th deployment 1.3 % down; every 50th silent for its first day.
        minutes = int((end - start).total_seconds() // 60)
        conn.execute(
            """
            INSERT INTO billing.probe_deployment_hours (hour, deployment_id, measured_minutes, down_minutes, minute_states)
            SELECT h, d.id, 60, x.down, repeat('d', x.down) || repeat('u', 60 - x.down)
            FROM billing.deployments d
            CROSS JOIN generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '1 hour', interval '1 hour') h
            CROSS JOIN LATERAL (SELECT CASE WHEN right(d.id, 5)::int %% 10 = 0
                                            AND h < %(start)s::timestamptz + (%(down)s / 60 + 1) * interval '1 hour'
                                       THEN least(60, greatest(0, %(down)s - extract(epoch FROM h - %(start)s::timestamptz)::int / 60))
                                       ELSE 0 END AS down) x
            WHERE NOT (right(d.id, 5)::int %% 50 = 0 AND h < %(start)s::timestamptz + interval '1 day')
            """,
            {"start": start, "end": end, "down": round(minutes * 0.013)},
        )
        # Grace for 1 % of the accounts, from 10:30 on the 5th to 04:15 on the 6th.
        graced = accounts[::100]
        cur.executemany(
            "INSERT INTO billing.lifecycle_events (event_key, account_id, kind, action, from_state, to_state, outcome, "
            "decided_at) VALUES (%s, %s, 'transition', 'transition', %s, %s, 'done', %s)",
            [
                row
                for a in graced
                for row in (
                    (
                        f"{a}:transition:1",
                        a,
                        "healthy",
                        "grace_period",
                        start + timedelta(days=4, hours=10, minutes=30),
                    ),
                    (f"{a}:transition:2", a, "grace_period", "healthy", start + timedelta(days=5, hours=4, minutes=15)),
                )
            ],
        )
        conn.execute("ANALYZE")
        print(f"set-up: usage and probes written in {time.perf_counter() - t0:.1f} s")
    with psycopg.connect(url, autocommit=True) as conn:
        post_entries(conn, [Entry(a, "topup", Decimal("5000"), f"pay-{a}") for a in accounts])
        t0, day, entries = time.perf_counter(), start, 0
        while day < end:
            entries += settle(conn, day, day + timedelta(days=1)).posted
            day += timedelta(days=1)
        conn.execute("VACUUM ANALYZE billing.credit_transactions")
        print(f"set-up: {entries:,} usage deductions settled in {time.perf_counter() - t0:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--month", default="2026-10")
    parser.add_argument("--reuse", action="store_true", help="reuse (and keep) the set-up database")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args()
    set_up_database(args.accounts, args.month, args.reuse)
    url = server(DB)
    os.environ["BILLING_DATABASE_URL"] = url
    import tempfile

    os.environ["DAGSTER_HOME"] = tempfile.mkdtemp(prefix="month-end-bench-dagster-")  # a throw-away instance
    from billing_pipeline.orchestration.month_end import run_month_end

    _, end = month_bounds(parse_month(args.month))
    now = end + timedelta(hours=6)
    t0 = time.perf_counter()
    first = run_month_end(args.month, now)
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = run_month_end(args.month, now)
    t_again = time.perf_counter() - t0
    with psycopg.connect(url) as conn:
        entries, lines = conn.execute(
            "SELECT (SELECT count(*) FROM billing.invoice_entries), (SELECT count(*) FROM billing.invoice_lines)"
        ).fetchone()
    print(f"accounts: {args.accounts}, month {args.month}: {entries:,} ledger entries on {lines:,} invoice lines")
    print(
        f"close-month (monthly_invoice_job through Dagster): {t_first:.1f} s — {first['invoices_issued']} invoices, "
        f"{first['sla_credits_posted']} SLA credits, SLA outcomes {first['sla'].get('outcomes')}"
    )
    print(
        f"close again: {t_again:.1f} s — {again['invoices_issued']} invoices, {again['sla_credits_posted']} SLA credits"
    )
    if not args.keep:
        drop()
    if not args.reuse:
        drop(SETUP_DB)


if __name__ == "__main__":
    main()
