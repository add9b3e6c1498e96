"""``billing verify``: recompute every balance from the ledger, check the cache, the chain and
everything issued from the ledger.

Balances and sequence numbers are checked set-based in SQL; the keyed hash chain is recomputed
in Python from a server-side cursor, entry by entry, in each account's sequence order, with the
keys of ``entries.ledger_keyring`` (the key is outside the database, so a re-chained ledger
does not verify). Entries from before the keyed chain are trusted only under the seal made with
the key (``legacy.py``), not on the boundary row alone. Issued invoices are held to the entries
they name, their totals, their recorded chain heads and gapless numbering (``invoice_checks.py``,
SQL); a deleted newest entry that an invoice recorded as its head is caught there. With a
checkpoint file (``checkpoint.py``) the chain heads published earlier are checked too, which
also catches newest entries deleted since the last invoice. The credit grants' draws, balances
and debts are replayed from the ledger and compared, and each account's balance is held to its
grants' remaining less its debt (``grants.check_grants``).
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
from billing_pipeline.ledger.grants import check_grants
from billing_pipeline.ledger.invoice_checks import invoice_problems, numbering_problems
from billing_pipeline.ledger.legacy import LegacyRun, recorded_boundary, seal_problems, write_seal
from billing_pipeline.ledger.problems import LedgerProblem


@dataclass(frozen=True)
class VerifyReport:
    accounts: int
    entries: int
    problems: list[LedgerProblem]
    unkeyed_entries: int = 0  # legacy entries (hashed before the chain was keyed, migration 0006)
    key_ids: dict[str, int] = field(default_factory=dict)  # entries per signing key id
    notes: list[str] = field(default_factory=list)  # what else was checked or written (checkpoint)

    invoices: int = 0
    grants: int = 0  # credit grants checked (docs/rules/ledger.md, "Grants")
    grant_draws: int = 0  # draws rebuilt from the ledger and compared with billing.grant_draws

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def kinds(self) -> dict[str, int]:
        """How many findings of each kind."""
        counts: dict[str, int] = {}
        for problem in self.problems:
            counts[problem.kind] = counts.get(problem.kind, 0) + 1
        return counts


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


def _chain_problems(
    conn: psycopg.Connection, keyring: LedgerKeyring, boundary: int, legacy: dict[str, LegacyRun]
) -> tuple[list[LedgerProblem], int, int, int, dict[str, int]]:
    """The chain's problems; ``legacy`` is filled with each account's legacy entries as walked."""
    problems: list[LedgerProblem] = []
    entries = accounts = unsealed = 0
    key_ids: dict[str, int] = {}
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
                run = legacy.setdefault(account, LegacyRun(0, 0, GENESIS_HASH))
                run.entries, run.last_seq, run.last_hash = run.entries + 1, seq, stored_hash
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


def verify_ledger(
    conn: psycopg.Connection, *, checkpoint: Path | str | None = None, seal_legacy: bool = False
) -> VerifyReport:
    """Check the whole ledger and the issued invoices; an empty ``problems`` list means every check passed.

    With ``checkpoint`` (a file outside the database): if it exists, the chain heads it holds
    must still be in the ledger (same entry, same hash); then, if everything passed, the file
    is (re)written with the current heads. With ``seal_legacy``: when the only findings are
    unsealed pre-key entries, seal them under the current key (once; ``legacy.py``).
    Needs the ledger key (``BILLING_LEDGER_KEY``).
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
            legacy_runs: dict[str, LegacyRun] = {}
            boundary = recorded_boundary(conn)
            chain, accounts, entries, unsealed, key_ids = _chain_problems(conn, keyring, boundary, legacy_runs)
            problems += chain
            problems += seal_problems(conn, keyring, legacy_runs, boundary)
            problems += invoice_problems(conn) + numbering_problems(conn)
            grant_check = check_grants(conn)
            problems += grant_check.problems
            invoices = conn.execute("SELECT count(*) FROM billing.invoices").fetchone()[0]
            path = None if checkpoint is None else Path(checkpoint)
            if path is not None and path.exists():
                found, note = check_checkpoint(conn, path, keyring)
                problems += found
                notes.append(note)
            if seal_legacy:  # after every other check: the seal vouches for what it sees
                if not any(p.kind == "legacy_unsealed" for p in problems):
                    notes.append("nothing to seal: no unsealed pre-key entries")
                elif all(p.kind == "legacy_unsealed" for p in problems):
                    notes.append(write_seal(conn, keyring, legacy_runs, boundary))
                    problems = []
                else:
                    notes.append("pre-key entries left unsealed, because other checks failed")
            if path is not None:
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
            f"{legacy} entries predate the keyed chain ({LEGACY_KEY_ID}), trusted only under the seal made with "
            f"the ledger key; {unsealed} of them are not yet followed by a keyed entry of their account"
        )
    return VerifyReport(
        accounts, entries, problems, legacy, key_ids, notes, invoices, grant_check.grants, grant_check.draws
    )
