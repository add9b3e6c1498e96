"""``billing verify``: recompute every balance from the ledger, check the cache and the chain.

Balances and sequence numbers are checked set-based in SQL; the keyed hash chain is recomputed
in Python from a server-side cursor, entry by entry, in each account's sequence order, with the
keys of ``entries.ledger_keyring`` (the key is outside the database, so a re-chained ledger
does not verify). With a checkpoint file (``checkpoint.py``) the chain heads published earlier
are checked too, which catches a deleted newest entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import IsolationLevel
from psycopg.pq import TransactionStatus

from billing_pipeline.ledger.entries import (
    GENESIS_HASH,
    LEGACY_KEY_ID,
    LedgerKeyring,
    canonical_json,
    entry_hash,
    ledger_keyring,
    timestamp_text,
)
from billing_pipeline.ledger.problems import LedgerProblem


@dataclass(frozen=True)
class VerifyReport:
    accounts: int
    entries: int
    problems: list[LedgerProblem]
    unkeyed_entries: int = 0  # legacy entries (hashed before the chain was keyed, migration 0006)
    key_ids: dict[str, int] = field(default_factory=dict)  # entries per signing key id
    notes: list[str] = field(default_factory=list)  # what else was checked or written (checkpoint)

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
            problems.append(
                LedgerProblem(
                    account,
                    "sequence",
                    f"entry {entry_id} has sequence number {seq}, expected {position}: an entry is missing or duplicated",
                    entry_id,
                )
            )
        if balance_after != running:
            problems.append(
                LedgerProblem(
                    account,
                    "balance_after",
                    f"entry {entry_id} says the balance after it is {balance_after}, but the ledger sums to {running} there",
                    entry_id,
                )
            )
    for account, cached, ledger, cached_last, ledger_last in conn.execute(CACHE_AGAINST_LEDGER):
        if cached is None:
            problems.append(
                LedgerProblem(
                    account,
                    "cache_missing",
                    f"the account has ledger entries (balance {ledger}) but no row in billing.credits",
                )
            )
            continue
        if cached != ledger:
            problems.append(
                LedgerProblem(account, "cache_balance", f"billing.credits says {cached}, the ledger sums to {ledger}")
            )
        if cached_last != ledger_last:
            problems.append(
                LedgerProblem(
                    account,
                    "cache_last_entry",
                    f"billing.credits points at entry {cached_last}, the ledger's last entry is {ledger_last}",
                )
            )
    return problems


def _legacy_boundary(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT min(max_legacy_id) FROM billing.ledger_legacy_boundary").fetchone()
    return row[0] or 0


def _chain_problems(
    conn: psycopg.Connection, keyring: LedgerKeyring
) -> tuple[list[LedgerProblem], int, int, int, dict[str, int]]:
    problems: list[LedgerProblem] = []
    entries = accounts = unsealed = 0
    key_ids: dict[str, int] = {}
    boundary = _legacy_boundary(conn)
    previous_account, previous_hash, keyed_seen, legacy_run = None, GENESIS_HASH, False, 0
    with conn.cursor(name="verify_chain") as cur:
        cur.itersize = 5000
        cur.execute(
            "SELECT id, account_id, account_seq, type, amount, balance_after, idempotency_key, reference, "
            "reason, actor, created_at, prev_hash, entry_hash, key_id FROM billing.credit_transactions "
            "ORDER BY account_id, account_seq"
        )
        for (
            entry_id,
            account,
            seq,
            type_,
            amount,
            balance_after,
            key,
            reference,
            reason,
            actor,
            created_at,
            prev_hash,
            stored_hash,
            key_id,
        ) in cur:
            entries += 1
            key_ids[key_id] = key_ids.get(key_id, 0) + 1
            if account != previous_account:
                accounts += 1
                unsealed += 0 if keyed_seen else legacy_run
                previous_account, previous_hash, keyed_seen, legacy_run = account, GENESIS_HASH, False, 0
            if prev_hash != previous_hash:
                problems.append(
                    LedgerProblem(
                        account,
                        "chain_broken",
                        f"entry {entry_id} (#{seq}) does not point at the hash of the entry before it",
                        entry_id,
                    )
                )
            previous_hash = stored_hash
            if key_id == LEGACY_KEY_ID:
                legacy_run += 1
                if entry_id > boundary or keyed_seen:
                    problems.append(
                        LedgerProblem(
                            account,
                            "legacy_hash_after_keying",
                            f"entry {entry_id} (#{seq}, key {key!r}) claims the unkeyed legacy hash, but it was written after the ledger chain became keyed: the ledger was rewritten",
                            entry_id,
                        )
                    )
                    continue
                secret = None
            else:
                keyed_seen = True
                secret = keyring.keys.get(key_id)
                if secret is None:
                    problems.append(
                        LedgerProblem(
                            account,
                            "unknown_key",
                            f"entry {entry_id} (#{seq}) is signed with ledger key {key_id!r}, which is not configured: add it to BILLING_LEDGER_RETIRED_KEYS as {key_id}:SECRET to verify it",
                            entry_id,
                        )
                    )
                    continue
            recomputed = entry_hash(
                prev_hash=prev_hash,
                account_id=account,
                account_seq=seq,
                type=type_,
                amount=amount,
                balance_after=balance_after,
                idempotency_key=key,
                reference_json=canonical_json(reference),
                reason=reason,
                actor=actor,
                created_at=timestamp_text(created_at),
                key_id=key_id,
                key=secret,
            )
            if recomputed != stored_hash:
                problems.append(
                    LedgerProblem(
                        account,
                        "hash_mismatch",
                        f"entry {entry_id} (#{seq}, key {key!r}) was altered after it was written: its content no longer matches its hash",
                        entry_id,
                    )
                )
    unsealed += 0 if keyed_seen else legacy_run
    return problems, accounts, entries, unsealed, key_ids


def verify_ledger(conn: psycopg.Connection, *, checkpoint: Path | str | None = None) -> VerifyReport:
    """Check the whole ledger; an empty ``problems`` list means every check passed.

    With ``checkpoint`` (a file outside the database): if it exists, the chain heads it holds
    must still be in the ledger (same entry, same hash); then, if everything passed, the file
    is (re)written with the current heads. Needs the ledger key (``BILLING_LEDGER_KEY``).
    """
    from billing_pipeline.ledger.checkpoint import check_checkpoint, write_checkpoint

    keyring = ledger_keyring()
    notes: list[str] = []
    # One snapshot for every check, so concurrent posting cannot look like a mismatch (when the
    # connection is idle; inside a caller's transaction we use the caller's snapshot rules).
    previous = conn.isolation_level
    idle = conn.info.transaction_status == TransactionStatus.IDLE
    if idle:
        conn.isolation_level = IsolationLevel.REPEATABLE_READ
    try:
        with conn.transaction():
            problems = _balance_problems(conn)
            chain, accounts, entries, unsealed, key_ids = _chain_problems(conn, keyring)
            problems += chain
            if checkpoint is not None:
                path = Path(checkpoint)
                if path.exists():
                    found, note = check_checkpoint(conn, path, keyring)
                    problems += found
                    notes.append(note)
                if not problems:
                    notes.append(write_checkpoint(conn, path, keyring))
                else:
                    notes.append(f"checkpoint {path} left as it was, because verification failed")
    finally:
        if idle:
            conn.isolation_level = previous
    legacy = key_ids.get(LEGACY_KEY_ID, 0)
    if legacy:
        notes.append(
            f"{legacy} entries predate the keyed chain ({LEGACY_KEY_ID}); {unsealed} of them are not yet "
            "sealed by a keyed entry of their account, so only a checkpoint file protects those"
        )
    return VerifyReport(accounts, entries, problems, legacy, key_ids, notes)
