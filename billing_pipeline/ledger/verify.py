"""``billing verify``: recompute every balance from the ledger, check the cache and the chain.

Balances and sequence numbers are checked set-based in SQL; the hash chain is recomputed in
Python from a server-side cursor, entry by entry, in each account's sequence order.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import IsolationLevel
from psycopg.pq import TransactionStatus

from billing_pipeline.ledger.entries import GENESIS_HASH, canonical_json, entry_hash, timestamp_text


@dataclass(frozen=True)
class LedgerProblem:
    account_id: str
    kind: str
    detail: str
    entry_id: int | None = None


@dataclass(frozen=True)
class VerifyReport:
    accounts: int
    entries: int
    problems: list[LedgerProblem]

    @property
    def ok(self) -> bool:
        return not self.problems


RUNNING_BALANCES = """
SELECT account_id, id, account_seq, balance_after, running, position
FROM (
    SELECT account_id, id, account_seq, balance_after,
           sum(amount) OVER w AS running,
           row_number() OVER w AS position
    FROM billing.credit_transactions
    WINDOW w AS (PARTITION BY account_id ORDER BY account_seq)
) t
WHERE balance_after <> running OR account_seq <> position
ORDER BY account_id, account_seq
"""

CACHE_AGAINST_LEDGER = """
WITH ledger AS (
    SELECT account_id, sum(amount) AS balance, count(*) AS entries,
           (array_agg(id ORDER BY account_seq DESC))[1] AS last_id
    FROM billing.credit_transactions
    GROUP BY account_id
)
SELECT coalesce(c.account_id, l.account_id), c.balance, coalesce(l.balance, 0), c.last_transaction_id, l.last_id
FROM billing.credits c
FULL JOIN ledger l ON l.account_id = c.account_id
WHERE c.account_id IS NULL
   OR c.balance <> coalesce(l.balance, 0)
   OR c.last_transaction_id IS DISTINCT FROM l.last_id
ORDER BY 1
"""


def _balance_problems(conn: psycopg.Connection) -> list[LedgerProblem]:
    problems = []
    for account, entry_id, seq, balance_after, running, position in conn.execute(RUNNING_BALANCES):
        if seq != position:
            problems.append(LedgerProblem(account, "sequence", f"entry {entry_id} has sequence number {seq}, expected {position}: an entry is missing or duplicated", entry_id))
        if balance_after != running:
            problems.append(LedgerProblem(account, "balance_after", f"entry {entry_id} says the balance after it is {balance_after}, but the ledger sums to {running} there", entry_id))
    for account, cached, ledger, cached_last, ledger_last in conn.execute(CACHE_AGAINST_LEDGER):
        if cached is None:
            problems.append(LedgerProblem(account, "cache_missing", f"the account has ledger entries (balance {ledger}) but no row in billing.credits"))
            continue
        if cached != ledger:
            problems.append(LedgerProblem(account, "cache_balance", f"billing.credits says {cached}, the ledger sums to {ledger}"))
        if cached_last != ledger_last:
            problems.append(LedgerProblem(account, "cache_last_entry", f"billing.credits points at entry {cached_last}, the ledger's last entry is {ledger_last}"))
    return problems


def _chain_problems(conn: psycopg.Connection) -> tuple[list[LedgerProblem], int, int]:
    problems: list[LedgerProblem] = []
    entries = accounts = 0
    previous_account, previous_hash = None, GENESIS_HASH
    with conn.cursor(name="verify_chain") as cur:
        cur.itersize = 5000
        cur.execute(
            "SELECT id, account_id, account_seq, type, amount, balance_after, idempotency_key, reference, "
            "reason, actor, created_at, prev_hash, entry_hash FROM billing.credit_transactions "
            "ORDER BY account_id, account_seq"
        )
        for (entry_id, account, seq, type_, amount, balance_after, key, reference,
             reason, actor, created_at, prev_hash, stored_hash) in cur:
            entries += 1
            if account != previous_account:
                accounts += 1
                previous_account, previous_hash = account, GENESIS_HASH
            if prev_hash != previous_hash:
                problems.append(LedgerProblem(account, "chain_broken", f"entry {entry_id} (#{seq}) does not point at the hash of the entry before it", entry_id))
            recomputed = entry_hash(
                prev_hash=prev_hash, account_id=account, account_seq=seq, type=type_, amount=amount,
                balance_after=balance_after, idempotency_key=key, reference_json=canonical_json(reference),
                reason=reason, actor=actor, created_at=timestamp_text(created_at),
            )
            if recomputed != stored_hash:
                problems.append(LedgerProblem(account, "hash_mismatch", f"entry {entry_id} (#{seq}, key {key!r}) was altered after it was written: its content no longer matches its hash", entry_id))
            previous_hash = stored_hash
    return problems, accounts, entries


def verify_ledger(conn: psycopg.Connection) -> VerifyReport:
    """Check the whole ledger; an empty ``problems`` list means every check passed."""
    # One snapshot for every check, so concurrent posting cannot look like a mismatch (when the
    # connection is idle; inside a caller's transaction we use the caller's snapshot rules).
    previous = conn.isolation_level
    idle = conn.info.transaction_status == TransactionStatus.IDLE
    if idle:
        conn.isolation_level = IsolationLevel.REPEATABLE_READ
    try:
        with conn.transaction():
            problems = _balance_problems(conn)
            chain, accounts, entries = _chain_problems(conn)
    finally:
        if idle:
            conn.isolation_level = previous
    return VerifyReport(accounts, entries, problems + chain)
