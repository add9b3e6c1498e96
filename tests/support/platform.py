"""Small helpers to put platform rows (accounts) into a test database."""

from __future__ import annotations

from decimal import Decimal

import psycopg


def create_accounts(url: str, *ids: str, threshold: Decimal = Decimal("10")) -> None:
    with psycopg.connect(url) as conn:
        conn.cursor().executemany(
            "INSERT INTO billing.accounts (id, name, email, low_balance_threshold) VALUES (%s, %s, %s, %s)",
            [(i, f"Account {i}", f"{i}@example.test", threshold) for i in ids],
        )


def ledger_rows(url: str, account_id: str | None = None) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT account_id, account_seq, type, amount, balance_after, idempotency_key "
            "FROM billing.credit_transactions WHERE %s::text IS NULL OR account_id = %s ORDER BY id",
            (account_id, account_id),
        ).fetchall()
