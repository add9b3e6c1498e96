"""The seal over the entries written before the chain was keyed (migration 0006, docs/rules/ledger.md).

Legacy entries carry a plain SHA-256 hash (key id ``legacy-sha256``), which anyone can compute.
The boundary migration 0006 recorded (``billing.ledger_legacy_boundary``) is a row in the same
database: someone with full rights can move it, re-label keyed entries as legacy and re-chain
them with plain SHA-256. So ``billing verify`` trusts legacy entries only under a seal made with
the ledger key, which lives outside the database: ``billing.ledger_legacy_seal`` holds the
boundary and each account's last legacy entry (sequence number and hash, which through the
chain commit to every legacy entry before it), with an HMAC over them.

A database without legacy entries needs no seal: there, any legacy entry is a rewrite. A
database that really holds entries from before the keyed chain is sealed once, by
``billing verify --seal-legacy``, after its legacy entries were checked against a checkpoint or
a backup (the command vouches for what it sees).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

import psycopg
from psycopg.types.json import Jsonb

from billing_pipeline.core.errors import InputError
from billing_pipeline.ledger.entries import LEGACY_KEY_ID, LedgerKeyring, canonical_json
from billing_pipeline.ledger.problems import LedgerProblem

FORMAT = "satusky-ledger-legacy-seal/1"


@dataclass
class LegacyRun:
    """One account's legacy entries as the verifier walked them."""

    entries: int
    last_seq: int
    last_hash: str


def _mac(key: bytes, max_legacy_id: int, heads: dict[str, list]) -> str:
    return hmac.new(key, canonical_json([FORMAT, max_legacy_id, heads]).encode(), hashlib.sha256).hexdigest()


def recorded_boundary(conn: psycopg.Connection) -> int:
    """The boundary as the database records it (``billing.ledger_legacy_boundary``): not to be trusted alone."""
    row = conn.execute("SELECT min(max_legacy_id) FROM billing.ledger_legacy_boundary").fetchone()
    return row[0] or 0


def seal_problems(
    conn: psycopg.Connection, keyring: LedgerKeyring, legacy: dict[str, LegacyRun], boundary: int
) -> list[LedgerProblem]:
    """What disagrees between the legacy entries found (``legacy``), the recorded boundary and the seal."""
    seal = conn.execute("SELECT max_legacy_id, legacy_heads, key_id, mac FROM billing.ledger_legacy_seal").fetchone()
    if seal is None:
        return [
            LedgerProblem(
                account,
                "legacy_unsealed",
                f"{run.entries} entries (up to #{run.last_seq}) claim the unkeyed pre-key hash ({LEGACY_KEY_ID}), "
                "but no seal under the ledger key vouches for them, so they may have been re-labelled and "
                "re-chained without the key. If this database really holds entries from before migration 0006, "
                "check them against a checkpoint or backup and run `billing verify --seal-legacy` once",
            )
            for account, run in sorted(legacy.items())
        ]
    sealed_id, sealed_heads, key_id, mac = seal
    secret = keyring.keys.get(key_id)
    if secret is None:
        return [
            LedgerProblem(
                None,
                "unknown_key",
                f"the legacy seal is signed with ledger key {key_id!r}, which is not configured: add it to "
                f"BILLING_LEDGER_RETIRED_KEYS as {key_id}:SECRET to verify it",
            )
        ]
    if not hmac.compare_digest(mac, _mac(secret, sealed_id, sealed_heads)):
        return [
            LedgerProblem(
                None,
                "legacy_seal_forged",
                "billing.ledger_legacy_seal does not match its HMAC: the seal of the pre-key entries was edited",
            )
        ]
    problems = []
    if boundary != sealed_id:
        problems.append(
            LedgerProblem(
                None,
                "legacy_boundary_moved",
                f"billing.ledger_legacy_boundary says {boundary}, but the sealed boundary is {sealed_id}: "
                "the boundary was moved",
            )
        )
    for account in sorted(set(legacy) | set(sealed_heads)):
        run, head = legacy.get(account), sealed_heads.get(account)
        found = None if run is None else [run.last_seq, run.last_hash]
        if found == head:
            continue
        sealed = (
            f"the sealed pre-key entries end at #{head[0]} (hash {head[1][:16]}…)"
            if head
            else ("the seal holds no pre-key entries of this account")
        )
        now = f"the ledger's end at #{run.last_seq} (hash {run.last_hash[:16]}…)" if run else "the ledger has none"
        problems.append(
            LedgerProblem(
                account,
                "legacy_entries_changed",
                f"{sealed}, but {now}: pre-key entries were re-labelled, rewritten or deleted",
            )
        )
    return problems


def write_seal(conn: psycopg.Connection, keyring: LedgerKeyring, legacy: dict[str, LegacyRun], boundary: int) -> str:
    """Seal the legacy entries found under the current key; returns a note. Refused if sealed already."""
    if conn.execute("SELECT 1 FROM billing.ledger_legacy_seal").fetchone():
        raise InputError("the pre-key entries are sealed already; a seal is written once and never replaced.")
    heads = {account: [run.last_seq, run.last_hash] for account, run in sorted(legacy.items())}
    conn.execute(
        "INSERT INTO billing.ledger_legacy_seal (max_legacy_id, legacy_heads, key_id, mac) VALUES (%s, %s, %s, %s)",
        (boundary, Jsonb(heads), keyring.current_id, _mac(keyring.current_key, boundary, heads)),
    )
    entries = sum(run.entries for run in legacy.values())
    return (
        f"sealed {entries} pre-key entries of {len(heads)} accounts (boundary {boundary}) "
        f"under ledger key {keyring.current_id}"
    )
