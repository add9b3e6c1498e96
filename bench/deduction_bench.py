"""Usage deduction: settle one hour of priced usage for 10,000 accounts (aim: under 5 s).

Usage: .venv/bin/python bench/deduction_bench.py [--accounts N] [--lines-per-account N]
Uses a scratch database `satusky_bench_deduction` on BILLING_BENCH_SERVER (default the local
server 127.0.0.1:5432), dropped and re-created. Each account has a prior ledger history (a
top-up and 24 settled hours), and the hour to settle has one usage charge per account and usage
kind (workload consumption and machine rental), in a stand-in `analytics.fct_usage_charges`
with the mart's columns (what settlement reads; `--lines-per-account` priced rows are summed
into each). Timed: the first settlement (2 entries per account), a re-run (nothing to post) and
a correction of 10 % of the accounts (adjusting deductions and reversals).
"""

from __future__ import annotations

import argparse
import os

# The scratch database's entries are chained under a key of their own unless one is given.
os.environ.setdefault("BILLING_LEDGER_KEY", "bench-scratch-ledger-key-not-a-secret-0123456789")
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from billing_pipeline.db.connection import make_conninfo_url
from billing_pipeline.db.migrate import upgrade
from billing_pipeline.ledger import Entry, post_entries
from billing_pipeline.ledger.deduction import settle_priced_usage
from tests.support.payments import USAGE_CHARGES_DDL

SERVER = os.environ.get("BILLING_BENCH_SERVER", "127.0.0.1:5432")
DB = "satusky_bench_deduction"
HOUR = datetime(2026, 11, 24, 10, tzinfo=UTC)
KINDS = ("workload_consumption", "machine_rental")


def fresh_database(accounts: int) -> str:
    host, port = SERVER.rsplit(":", 1)
    with psycopg.connect(make_conninfo_url(host=host, port=int(port), dbname="postgres"), autocommit=True) as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB)))
    url = make_conninfo_url(host=host, port=int(port), dbname=DB)
    upgrade(url)
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        conn.execute(USAGE_CHARGES_DDL)
        with cur.copy("COPY billing.accounts (id, name) FROM STDIN") as copy:
            for i in range(accounts):
                copy.write_row((f"acct-{i:05d}", f"Account {i}"))
    return url


def usage_rows(accounts: int, lines: int, hour: datetime):
    """(account, hour, usage kind, amount, priced lines): one charge per account and kind, with
    micro-credit amounts as fct_usage_charges holds them."""
    for i in range(accounts):
        for k, kind in enumerate(KINDS):
            amount = sum(Decimal(((i * 7 + j * 13) % 1000) + 1) for j in range(k, lines, 2)) / Decimal(1000)
            yield (f"acct-{i:05d}", hour, kind, amount, len(range(k, lines, 2)))


def load_hour(url: str, rows) -> None:
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy(
            "COPY analytics.fct_usage_charges (account_id, hour, usage_kind, amount, amount_exact, "
            "priced_row_count) FROM STDIN"
        ) as copy:
            for account, hour, kind, amount, lines in rows:
                copy.write_row((account, hour, kind, amount, amount, lines))
        conn.execute("ANALYZE analytics.fct_usage_charges")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--lines-per-account", type=int, default=4)
    parser.add_argument("--history-hours", type=int, default=24)
    args = parser.parse_args()
    url = fresh_database(args.accounts)

    # History: a top-up and `history-hours` settled hours per account.
    with psycopg.connect(url) as conn:
        post_entries(conn, [Entry(f"acct-{i:05d}", "topup", Decimal("1000"), f"t-{i}") for i in range(args.accounts)])
    for h in range(args.history_hours, 0, -1):
        load_hour(url, usage_rows(args.accounts, 2, HOUR - timedelta(hours=h)))
    with psycopg.connect(url, autocommit=True) as conn:
        t0 = time.perf_counter()
        settle_priced_usage(conn, HOUR - timedelta(hours=args.history_hours), HOUR)
        print(f"history: {args.history_hours} hours settled in {time.perf_counter() - t0:.1f} s")
        conn.execute("VACUUM ANALYZE billing.credit_transactions")

    load_hour(url, usage_rows(args.accounts, args.lines_per_account, HOUR))
    with psycopg.connect(url, autocommit=True) as conn:
        window = (HOUR, HOUR + timedelta(hours=1))
        t0 = time.perf_counter()
        first = settle_priced_usage(conn, *window)
        t_first = time.perf_counter() - t0
        t0 = time.perf_counter()
        rerun = settle_priced_usage(conn, *window)
        t_rerun = time.perf_counter() - t0
        # Correct 10 % of the accounts: half owe more, half owe less.
        corrected = max(args.accounts // 10, 1)
        conn.execute(
            "DELETE FROM analytics.fct_usage_charges WHERE hour = %s AND account_id < %s",
            (HOUR, f"acct-{corrected:05d}"),
        )
        load_hour(
            url,
            (
                (a, h, k, amt * (2 if int(a[5:]) % 2 else Decimal("0.5")), n)
                for a, h, k, amt, n in usage_rows(corrected, args.lines_per_account, HOUR)
            ),
        )
        t0 = time.perf_counter()
        fix = settle_priced_usage(conn, *window)
        t_fix = time.perf_counter() - t0
    print(
        f"accounts: {args.accounts}, usage charges in the hour: {args.accounts * len(KINDS)} "
        f"({args.accounts * args.lines_per_account} priced lines)"
    )
    print(f"first settlement: {first.posted} entries, {t_first:.2f} s")
    print(f"re-run: {rerun.posted} entries, {t_rerun:.2f} s")
    print(
        f"correction of {corrected} accounts: {fix.adjustments} adjusting deductions, {fix.reversals} reversals, "
        f"{t_fix:.2f} s"
    )
    host, port = SERVER.rsplit(":", 1)
    with psycopg.connect(make_conninfo_url(host=host, port=int(port), dbname="postgres"), autocommit=True) as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB)))


if __name__ == "__main__":
    main()
