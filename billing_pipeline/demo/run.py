"""Run the whole pipeline on demo data and show the result.

Database: BILLING_DATABASE_URL when set, else the local server on 127.0.0.1:5432 when it
answers, else an embedded PostgreSQL started under ./.billing. Everything written is
idempotent, so the demo can be run any number of times.
"""

from __future__ import annotations

import os
import sys

from billing_pipeline.cli.output import credits
from billing_pipeline.cli.status import balance_state
from billing_pipeline.db.connection import connect, database_url, redact_url
from billing_pipeline.db.migrate import upgrade
from billing_pipeline.demo import platform
from billing_pipeline.db.dagster_instance import prepare_dagster_home
from billing_pipeline.ledger import Entry, EntryType, post_entries


def section(title: str) -> None:
    print(f"\n== {title} ==")


def post_opening_credit(conn) -> None:
    results = post_entries(conn, [
        Entry(account, EntryType.TOPUP, amount, reference, reference={"payment_reference": reference}, actor="demo")
        for account, amount, reference in platform.OPENING_TOPUPS
    ])
    for r in results:
        verb = "posted" if r.created else "already posted"
        print(f"  {r.account_id:<8} top-up {credits(r.amount)} ({verb}, entry {r.entry_id})")


def print_balances(conn) -> None:
    rows = conn.execute(
        "SELECT a.id, a.name, coalesce(c.balance, 0), a.low_balance_threshold, "
        "(SELECT count(*) FROM billing.credit_transactions t WHERE t.account_id = a.id) "
        "FROM billing.accounts a LEFT JOIN billing.credits c ON c.account_id = a.id ORDER BY a.id"
    ).fetchall()
    print(f"  {'account':<10}{'name':<20}{'balance':>20}{'entries':>9}  state")
    for account, name, balance, threshold, entries in rows:
        print(f"  {account:<10}{name:<20}{credits(balance):>20}{entries:>9}  {balance_state(balance, threshold)}")


def main() -> int:
    url = database_url()
    os.environ["BILLING_DATABASE_URL"] = url  # the Dagster resources read it from the environment
    section("Database")
    print(f"  billing database: {redact_url(url)}")
    print(f"  migrated to revision {upgrade(url)}")
    home = prepare_dagster_home(url)
    print(f"  Dagster instance (runs and events in PostgreSQL): DAGSTER_HOME={home}")

    with connect(url) as conn:
        section("Demo platform")
        platform.load_platform(conn)
        for table in ("accounts", "deployments", "domains", "pricing_configs", "machine_usages"):
            count = conn.execute(f"SELECT count(*) FROM billing.{table}").fetchone()[0]  # fixed names
            print(f"  billing.{table:<16} {count} rows")

        section("Opening credit (ledger)")
        post_opening_credit(conn)

        section("Balances")
        print_balances(conn)
    print("\nDone. Explore: `billing status acme`, `billing ledger acme`, `billing verify`,")
    print(f"and the Dagster UI: DAGSTER_HOME={home} .venv/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000")
    return 0


if __name__ == "__main__":
    sys.exit(main())
