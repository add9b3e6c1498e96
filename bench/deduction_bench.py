"""Usage deduction: settle one hour of priced usage for 10,000 accounts (aim: under 5 s).

Usage: .venv/bin/python bench/deduction_bench.py [--accounts N] [--lines-per-account N]
Uses a scratch database `satusky_bench_deduction` on BILLING_BENCH_SERVER (default the local
server 127.0.0.1:5432), dropped and re-created. Each account has a prior ledger history (a
top-up and 24 settled hours), and the hour to settle has `--lines-per-account` priced-usage
rows per account across both usage kinds (workload consumption and machine rental), in a
stand-in `analytics.fct_priced_usage` with the mart's columns. Timed: the first settlement
(2 entries per account), a re-run (nothing to post) and a correction of 10 % of the accounts
(adjusting deductions and reversals).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from billing_pipeline.db.connection import make_conninfo_url  # noqa: E402
from billing_pipeline.db.migrate import upgrade  # noqa: E402
from billing_pipeline.ledger import Entry, post_entries  # noqa: E402
from billing_pipeline.ledger.deduction import settle_priced_usage  # noqa: E402
from tests.support.payments import PRICED_USAGE_DDL  # noqa: E402

SERVER = os.environ.get("BILLING_BENCH_SERVER", "127.0.0.1:5432")
DB = "satusky_bench_deduction"
HOUR = datetime(2026, 11, 24, 10, tzinfo=timezone.utc)
KINDS = ("workload_consumption", "machine_rental")


def fresh_database(accounts: int) -> str:
    host, port = SERVER.rsplit(":", 1)
    with psycopg.connect(make_conninfo_url(host=host, port=int(port), dbname="postgres"), autocommit=True) as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB)))
    url = make_conninfo_url(host=host, port=int(port), dbname=DB)
    upgrade(url)
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        conn.execute(PRICED_USAGE_DDL)
        with cur.copy("COPY billing.accounts (id, name) FROM STDIN") as copy:
            for i in range(accounts):
                copy.write_row((f"acct-{i:05d}", f"Account {i}"))
    return url


def usage_rows(accounts: int, lines: int, hour: datetime, factor: int = 1):
    for i in range(accounts):
        for j in range(lines):
            kind = KINDS[j % 2]
            amount = Decimal(((i * 7 + j * 13) % 1000) + 1) / Decimal(1_000_003) * factor
            yield (f"acct-{i:05d}", hour, kind, "cpu" if kind == KINDS[0] else "machine", f"dep-{i}-{j}",
                   Decimal("1"), "core_hour", amount, amount, False)


def load_hour(url: str, rows) -> None:
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy("COPY analytics.fct_priced_usage (account_id, hour, usage_kind, resource, deployment_id, "
                      "quantity, unit, unit_price, amount, is_estimate) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        conn.execute("ANALYZE analytics.fct_priced_usage")


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
        conn.execute("DELETE FROM analytics.fct_priced_usage WHERE hour = %s AND account_id < %s",
                     (HOUR, f"acct-{corrected:05d}"))
        load_hour(url, ((a, h, k, r, d, q, u, p, amt * (2 if int(a[5:]) % 2 else Decimal("0.5")), e)
                        for a, h, k, r, d, q, u, p, amt, e in usage_rows(corrected, args.lines_per_account, HOUR)))
        t0 = time.perf_counter()
        fix = settle_priced_usage(conn, *window)
        t_fix = time.perf_counter() - t0
    print(f"accounts: {args.accounts}, priced-usage lines in the hour: {args.accounts * args.lines_per_account}")
    print(f"first settlement: {first.posted} entries, {t_first:.2f} s")
    print(f"re-run: {rerun.posted} entries, {t_rerun:.2f} s")
    print(f"correction of {corrected} accounts: {fix.adjustments} adjusting deductions, {fix.reversals} reversals, "
          f"{t_fix:.2f} s")
    host, port = SERVER.rsplit(":", 1)
    with psycopg.connect(make_conninfo_url(host=host, port=int(port), dbname="postgres"), autocommit=True) as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB)))


if __name__ == "__main__":
    main()
