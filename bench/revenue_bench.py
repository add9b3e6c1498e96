"""fct_credit_revenue's query against the size of the grants' history (the mart is rebuilt whole
every hour).

Usage: .venv/bin/python bench/revenue_bench.py [--accounts N] [--months M] [--draws-per-grant K] [--compare-rev REV]

Generates, in a scratch schema ``bench_revenue`` on BILLING_BENCH_SERVER (default the local server
127.0.0.1:5432, database ``postgres``; dropped afterwards), what the model reads: N accounts, each
with M monthly top-ups of 100 paid credits (``stg_ledger__grants``), each used up in its own month
but the last (40 of it drawn), in K draws a grant spread over the month's first 28 days (the
settlement draws every hour: K = 720 is a month of hourly usage), as the dated draws
(``int_grant_draws_dated``, which revisions before the daily sums read) and as their daily sums
(``int_grant_draws_daily``; the time to sum them from scratch, a full refresh, is printed), read
as the mart reads them (``int_grant_draws_current``: the sums, the last two days live). Then
runs the model's SELECT as the working tree has it, and with ``--compare-rev`` as that git
revision had it, twice each, alternating, and prints the time, the rows and two column sums, which
must agree.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from pathlib import Path

import psycopg

from billing_pipeline.db.connection import make_conninfo_url

SERVER = os.environ.get("BILLING_BENCH_SERVER", "127.0.0.1:5432")
MODEL = "dbt_project/models/marts/fct_credit_revenue.sql"
ROOT = Path(__file__).resolve().parents[1]
AS_OF = "'2030-12-15T00:00:00+00:00'::timestamptz"  # after every generated month


def model_sql(text: str) -> str:
    """The model's Jinja replaced by the scratch tables and a fixed clock."""
    return (
        text.replace("{{ ref('stg_ledger__grants') }}", "bench_revenue.grants")
        .replace("{{ ref('int_grant_draws_dated') }}", "bench_revenue.draws")
        .replace("{{ ref('int_grant_draws_daily') }}", "bench_revenue.draws_daily")
        .replace("{{ ref('int_grant_draws_current') }}", "bench_revenue.draws_current")
        .replace("{{ as_of_timestamp() }}", AS_OF)
    )


def generate(conn: psycopg.Connection, accounts: int, months: int, draws_per_grant: int) -> None:
    conn.execute("DROP SCHEMA IF EXISTS bench_revenue CASCADE")
    conn.execute("CREATE SCHEMA bench_revenue")
    conn.execute(
        """
        CREATE TABLE bench_revenue.grants AS
        SELECT (a * 1000 + m)::bigint AS grant_entry_id, 'acct-' || a AS account_id, 'paid'::text AS kind,
               100::numeric(20, 6) AS granted, (date '2026-01-01' + make_interval(months => m))::date AS granted_month
        FROM generate_series(1, %(accounts)s) a, generate_series(0, %(months)s - 1) m
        """,
        {"accounts": accounts, "months": months},
    )
    conn.execute(
        """
        CREATE TABLE bench_revenue.draws AS
        -- Each grant's total in k parts of micro-credits; the first part takes the remainder.
        SELECT grant_entry_id, account_id, kind, granted_month AS draw_month, false AS is_expiry,
               granted_month + (part - 1) %% 28 AS written_day,
               trunc(total / %(k)s, 6) + CASE WHEN part = 1 THEN total - %(k)s * trunc(total / %(k)s, 6) ELSE 0 END
                   AS amount
        FROM (SELECT *, CASE WHEN grant_entry_id %% 1000 < %(months)s - 1 THEN 100 ELSE 40 END::numeric AS total
              FROM bench_revenue.grants) g, generate_series(1, %(k)s) part
        """,
        {"months": months, "k": draws_per_grant},
    )
    began = time.monotonic()
    conn.execute(
        """
        CREATE TABLE bench_revenue.draws_daily AS
        SELECT grant_entry_id, account_id, kind, draw_month, is_expiry, written_day,
               sum(amount) AS amount, count(*) AS draws
        FROM bench_revenue.draws GROUP BY 1, 2, 3, 4, 5, 6
        """
    )
    print(f"  the daily sums from scratch (a full refresh): {time.monotonic() - began:.2f} s")
    # As int_grant_draws_current: the sums before the last two days, the draws of those days live,
    # the window's start written in as a constant (here read through an index on the day; the
    # model reaches them through the ledger's index on created_at).
    conn.execute("CREATE INDEX ON bench_revenue.draws (written_day)")
    (since,) = conn.execute("SELECT max(written_day) - 1 FROM bench_revenue.draws_daily").fetchone()
    conn.execute(
        f"""
        CREATE VIEW bench_revenue.draws_current AS
        SELECT grant_entry_id, account_id, kind, draw_month, is_expiry, amount
        FROM bench_revenue.draws_daily WHERE written_day < '{since}'::date
        UNION ALL
        SELECT grant_entry_id, account_id, kind, draw_month, is_expiry, amount
        FROM bench_revenue.draws WHERE written_day >= '{since}'::date
        """
    )
    for table in ("grants", "draws", "draws_daily"):
        conn.execute(f"ANALYZE bench_revenue.{table}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--months", type=int, default=48)
    parser.add_argument("--draws-per-grant", type=int, default=1)
    parser.add_argument("--compare-rev", help="a git revision whose model to time beside the working tree's")
    args = parser.parse_args()
    if not 1 <= args.months < 1000:
        parser.error("--months must be between 1 and 999 (grant ids are account * 1000 + month)")
    queries = {"working tree": model_sql((ROOT / MODEL).read_text())}
    if args.compare_rev:
        old = subprocess.run(
            ["git", "show", f"{args.compare_rev}:{MODEL}"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
        queries = {args.compare_rev: model_sql(old), **queries}
    host, port = SERVER.rsplit(":", 1)
    url = make_conninfo_url(host=host, port=int(port), dbname="postgres")
    with psycopg.connect(url, autocommit=True) as conn:
        print(
            f"{args.accounts} accounts x {args.months} monthly grants x {args.draws_per_grant} draws; load average {os.getloadavg()[0]:.2f}"
        )
        generate(conn, args.accounts, args.months, args.draws_per_grant)
        try:
            for _ in range(2):
                for name, query in queries.items():
                    began = time.monotonic()
                    rows, deferred, recognised = conn.execute(
                        f"SELECT count(*), sum(deferred), sum(recognised) FROM ({query}) AS revenue"
                    ).fetchone()
                    seconds = time.monotonic() - began
                    print(f"  {name:>14}: {seconds:6.2f} s  {rows} rows  deferred {deferred}  recognised {recognised}")
        finally:
            conn.execute("DROP SCHEMA bench_revenue CASCADE")


if __name__ == "__main__":
    main()
