"""Helpers of the credit-grant tests: entries named by their keys, and the grant tables read back
with entry ids replaced by those keys, so a row reads as "this debit drew so much from that grant"."""

from __future__ import annotations

from decimal import Decimal

from billing_pipeline.ledger import Entry, post_entries

D = Decimal
KIND = "workload_consumption"


def usage(account: str, amount: str, hour: str, key: str, **extra) -> Entry:
    reference = {"hour": hour, "usage_kind": KIND, "account_id": account, **extra}
    return Entry(account, "usage_deduction", D(amount), key, reference=reference)


def h(day: int, hour: int) -> str:
    """An hour of November 2026, spelled as the settlement spells it (Hour.text)."""
    return f"2026-11-{day:02d}T{hour:02d}:00:00+00:00"


def post_at(conn, clock, when: str, *entries: Entry) -> dict[str, int]:
    clock.set(when)
    return {r.idempotency_key: r.entry_id for r in post_entries(conn, list(entries))}


def keyed(conn, sql: str, columns: int = 1) -> list[tuple]:
    """Rows whose first ``columns`` columns (entry ids) are replaced by the entries' idempotency keys."""
    names = dict(conn.execute("SELECT id, idempotency_key FROM billing.credit_transactions").fetchall())
    return [tuple(names[v] for v in row[:columns]) + tuple(row[columns:]) for row in conn.execute(sql)]


def draws(conn) -> list[tuple]:
    return keyed(conn, "SELECT entry_id, grant_entry_id, amount FROM billing.grant_draws ORDER BY id", 2)


def balances(conn) -> list[tuple]:
    return keyed(
        conn,
        "SELECT b.grant_entry_id, g.kind, g.priority, b.drawn, b.expired, b.remaining "
        "FROM billing.grant_balances b JOIN billing.grants g ON g.entry_id = b.grant_entry_id ORDER BY 1",
    )


def debts(conn) -> list[tuple]:
    return keyed(conn, "SELECT entry_id, outstanding FROM billing.grant_debts ORDER BY entry_id")


def replay_grant_tables(conn) -> None:
    """What someone with full database rights does after editing the ledger, so the grant tables
    give nothing away: rewrite them from the edited ledger with the product's own replay. Needs
    the triggers off (``session_replication_role = replica``). The tamper tests then show what
    the rest of ``billing verify`` catches on its own."""
    from billing_pipeline.ledger.grants import backfill

    conn.execute("DELETE FROM billing.grant_draws")
    conn.execute("DELETE FROM billing.grant_debts")
    conn.execute("DELETE FROM billing.grant_balances")
    conn.execute("DELETE FROM billing.grants")
    with conn.cursor() as cur:
        backfill(cur)
