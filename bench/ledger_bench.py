"""Ledger throughput: 100,000 entries across 1,000 accounts, batch path vs single-entry path.

Usage: .venv/bin/python bench/ledger_bench.py [--entries N] [--accounts N] [--batch-size N] [--paths batch,single] [--invoices]
The batch path is measured with the raw ``COPY`` floor beside it, in the same run (``copy_floor``):
"batch path / floor rate" is the figure issue 24 asks for, steadier than entries/s on a shared
machine. Account i gets entries i, i + accounts, ...: with an even account count, even accounts
only top up and odd ones only pay usage, so every usage deduction becomes debt (no draws).
With --invoices, the batch path's entries are then issued on one invoice per account (this
month's: the entries' period is their posting month) and verify is timed again, its invoice
checks apart. Uses a scratch database `satusky_bench_ledger` on BILLING_BENCH_SERVER (default the local
server 127.0.0.1:5432), dropped and re-created for each path so both start equal.
"""

from __future__ import annotations

import argparse
import os

# The scratch database's entries are chained under a key of their own unless one is given.
os.environ.setdefault("BILLING_LEDGER_KEY", "bench-scratch-ledger-key-not-a-secret-0123456789")
import time
from decimal import Decimal

import psycopg
from psycopg import sql

from billing_pipeline.db.connection import make_conninfo_url
from billing_pipeline.db.migrate import upgrade
from billing_pipeline.ledger import Entry, post_entries, post_entry, verify_ledger
from billing_pipeline.ledger.invoice_checks import invoice_problems, numbering_problems

SERVER = os.environ.get("BILLING_BENCH_SERVER", "127.0.0.1:5432")
DB = "satusky_bench_ledger"


def fresh_database(accounts: int) -> str:
    host, port = SERVER.rsplit(":", 1)
    with psycopg.connect(make_conninfo_url(host=host, port=int(port), dbname="postgres"), autocommit=True) as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB)))
    url = make_conninfo_url(host=host, port=int(port), dbname=DB)
    upgrade(url)
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy("COPY billing.accounts (id, name) FROM STDIN") as copy:
            for i in range(accounts):
                copy.write_row((f"acct-{i:05d}", f"Account {i}"))
    return url


def entries(n: int, accounts: int, *, usage_month: str | None = None) -> list[Entry]:
    # Alternate top-ups and usage deductions with amounts that need rounding. With usage_month
    # (YYYY-MM), deductions name an hour of it and a usage kind, as the settlement writes them.
    out = []
    for i in range(n):
        account = f"acct-{i % accounts:05d}"
        if i % 2:
            reference = (
                {"hour": f"{usage_month}-01T{i % 24:02d}:00:00+00:00", "usage_kind": "workload_consumption"}
                if usage_month
                else {}
            )
            out.append(
                Entry(
                    account, "usage_deduction", -Decimal(i % 997) / 7 - Decimal("0.01"), f"u-{i}", reference=reference
                )
            )
        else:
            out.append(Entry(account, "topup", Decimal(i % 89) + Decimal("0.5"), f"t-{i}"))
    return out


def copy_floor(conn: psycopg.Connection, batch: list[Entry]) -> dict[str, float]:
    """The raw ``COPY`` floor, measured in the same run on the same server: the same number of
    ledger rows (every column the batch path writes, hashes as 64 hex characters, computed
    before the clock starts) COPYed in one transaction into (a) a table like
    ``billing.credit_transactions`` with its indexes, unique keys and checks but no trigger, and
    (b) the same table without any index. Each table is dropped afterwards."""
    import hashlib
    import json

    seq: dict[str, int] = {}
    rows = []
    for e in batch:
        seq[e.account_id] = seq.get(e.account_id, 0) + 1
        digest = hashlib.sha256(e.idempotency_key.encode()).hexdigest()
        rows.append(
            (
                e.account_id,
                seq[e.account_id],
                e.type,
                e.amount,
                e.amount,
                e.idempotency_key,
                json.dumps(e.reference or {}),
                digest,
                digest,
                "bench",
            )
        )
    columns = "account_id, account_seq, type, amount, balance_after, idempotency_key, reference, prev_hash, entry_hash, key_id"
    out = {}
    for name, like in (
        (
            "COPY into the ledger's shape with its indexes",
            "INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING CONSTRAINTS INCLUDING INDEXES",
        ),
        ("COPY into the same columns, no index", "INCLUDING DEFAULTS INCLUDING IDENTITY"),
    ):
        conn.execute(
            f"DROP TABLE IF EXISTS billing.bench_copy_floor; CREATE TABLE billing.bench_copy_floor (LIKE billing.credit_transactions {like})"
        )
        conn.commit()
        started = time.perf_counter()
        with conn.cursor() as cur, cur.copy(f"COPY billing.bench_copy_floor ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        conn.commit()
        out[name] = time.perf_counter() - started
        conn.execute("DROP TABLE billing.bench_copy_floor")
        conn.commit()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--accounts", type=int, default=1_000)
    parser.add_argument("--batch-size", type=int, default=100_000)
    parser.add_argument("--paths", default="batch,single", help="which paths to measure (batch, single)")
    parser.add_argument("--invoices", action="store_true", help="then issue invoices and time verify's checks of them")
    args = parser.parse_args()
    paths = set(args.paths.split(","))
    from datetime import UTC, datetime

    month = f"{datetime.now(UTC):%Y-%m}" if args.invoices else None  # a bench, not a test: this month
    batch = entries(args.entries, args.accounts, usage_month=month)

    n = args.entries
    print(f"entries={n} accounts={args.accounts} batch_size={args.batch_size}")
    if "batch" in paths:
        url = fresh_database(args.accounts)
        with psycopg.connect(url) as conn:
            started = time.perf_counter()
            for i in range(0, len(batch), args.batch_size):
                post_entries(conn, batch[i : i + args.batch_size])
            seconds = time.perf_counter() - started
            print(f"batch path:        {seconds:7.2f} s  {n / seconds:10,.0f} entries/s", flush=True)
            floor = copy_floor(conn, batch)
            for name, floor_seconds in floor.items():
                print(
                    f"floor, {name}: {floor_seconds:7.2f} s  {n / floor_seconds:10,.0f} rows/s"
                    f"  (batch path / floor rate: {floor_seconds / seconds:.2f})",
                    flush=True,
                )
            started = time.perf_counter()
            assert verify_ledger(conn).ok
            print(f"verify (chain + balances): {time.perf_counter() - started:.2f} s", flush=True)
            if args.invoices:
                _time_invoice_checks(conn)
    if "single" in paths:
        url = fresh_database(args.accounts)
        with psycopg.connect(url, autocommit=True) as conn:
            started = time.perf_counter()
            for entry in batch:
                post_entry(conn, entry)
            seconds = time.perf_counter() - started
            print(f"single-entry path: {seconds:7.2f} s  {n / seconds:10,.0f} entries/s")


def _time_invoice_checks(conn: psycopg.Connection) -> None:
    from datetime import UTC, date, datetime

    from billing_pipeline.invoicing.invoices import issue_invoices

    today = datetime.now(UTC)  # the entries were posted this month, their usage hours are in it
    issued = issue_invoices(conn, date(today.year, today.month, 1), "bench")
    print(f"issued {issued.invoices_issued} invoices, {issued.lines:,} lines, {issued.entries:,} entries", flush=True)
    started = time.perf_counter()
    assert not invoice_problems(conn) and not numbering_problems(conn)
    print(f"verify's invoice checks: {time.perf_counter() - started:.2f} s", flush=True)
    started = time.perf_counter()
    assert verify_ledger(conn).ok
    print(f"verify (chain + balances + invoices): {time.perf_counter() - started:.2f} s", flush=True)


if __name__ == "__main__":
    main()
