"""Chain heads published outside the database (docs/rules/ledger.md).

A keyed chain stops anyone without the key from editing or re-chaining entries, but deleting
an account's newest entries (and rolling back ``billing.credits``) leaves a shorter chain that
is still valid. What catches that is a copy of each account's chain head kept somewhere the
database's superuser cannot reach:

* ``billing verify --checkpoint FILE`` checks the heads in FILE (if it exists), then writes the
  current heads there (only when every check passed);
* every issued invoice carries its account's head (``chain_heads`` is what invoicing and the
  hourly Dagster materialization call).

A checkpoint file is JSON: per account the number of entries, the id of the last one and its
hash, plus an HMAC over the whole under the ledger key, so the file cannot be forged either.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import psycopg

from billing_pipeline.core.clock import system_now
from billing_pipeline.core.errors import ConfigurationError, InputError
from billing_pipeline.ledger.entries import LedgerKeyring, canonical_json
from billing_pipeline.ledger.problems import LedgerProblem

FORMAT = "satusky-ledger-checkpoint/1"

# Each account's newest entry, one index lookup per account ((account_id, account_seq) is
# unique): the settlement records the heads every hour, and a DISTINCT ON over the ledger sorted
# every entry ever posted (1 s at a month of history, growing with it). Every account with
# entries is in billing.accounts (the ledger refuses others).
# HEAD_OF is the one reading of an account's head: a lateral subquery over ``{account}``, used
# here and by the invoices (which carry their account's head) in their own set-based statement.
HEAD_OF = """
    SELECT account_seq, id, entry_hash FROM billing.credit_transactions t
    WHERE t.account_id = {account}
    ORDER BY account_seq DESC
    LIMIT 1
"""
CHAIN_HEADS = f"""
SELECT a.id AS account_id, t.account_seq, t.id, t.entry_hash
FROM billing.accounts a
CROSS JOIN LATERAL ({HEAD_OF.format(account="a.id")}) t
ORDER BY a.id
"""


def chain_heads(conn: psycopg.Connection) -> dict[str, dict[str, Any]]:
    """Each account's chain head: ``{account_id: {"entries", "last_id", "head"}}``.

    ``entries`` is the number of entries (the last entry's sequence number: ``billing verify``
    checks they agree), ``last_id`` the newest entry's id and ``head`` its hash.
    """
    return {
        account: {"entries": seq, "last_id": entry_id, "head": digest}
        for account, seq, entry_id, digest in conn.execute(CHAIN_HEADS, prepare=False)
    }


def chain_head(conn: psycopg.Connection, account_id: str) -> dict[str, Any] | None:
    """One account's chain head (as in ``chain_heads``), or None when it has no entries."""
    row = conn.execute(HEAD_OF.format(account="%s"), (account_id,), prepare=False).fetchone()
    return None if row is None else {"entries": row[0], "last_id": row[1], "head": row[2]}


def chain_heads_digest(heads: dict[str, dict[str, Any]]) -> str:
    """SHA-256 of the heads as ``canonical_json`` spells them: one digest a reader can recompute."""
    return hashlib.sha256(canonical_json(heads).encode()).hexdigest()


def _mac(keyring: LedgerKeyring, key_id: str, body: dict[str, Any]) -> str:
    return hmac.new(keyring.keys[key_id], canonical_json(body).encode(), hashlib.sha256).hexdigest()


def write_checkpoint(conn: psycopg.Connection, path: Path, keyring: LedgerKeyring) -> str:
    """Write the current chain heads to ``path`` atomically; returns a note saying so."""
    body = {
        "format": FORMAT,
        "written_at": system_now().isoformat(timespec="seconds"),
        "accounts": chain_heads(conn),
    }
    document = {**body, "key_id": keyring.current_id, "mac": _mac(keyring, keyring.current_id, body)}
    path = path.resolve()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(document, indent=1, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot write the checkpoint file {path}: {exc.strerror}. Give a path in a writable folder."
        ) from None
    return f"checkpoint written to {path}: chain heads of {len(body['accounts'])} accounts"


def _read(path: Path, keyring: LedgerKeyring) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(
            f"cannot read the checkpoint file {path}: {exc}. Give a file written by "
            "`billing verify --checkpoint`, or a new path to start one."
        ) from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise InputError(f"{path} is not a ledger checkpoint ({FORMAT}).")
    key_id = document.get("key_id")
    if key_id not in keyring.keys:
        raise ConfigurationError(
            f"the checkpoint {path} is signed with ledger key {key_id!r}, which is not configured: "
            f"add it to BILLING_LEDGER_RETIRED_KEYS as {key_id}:SECRET."
        )
    body = {k: document.get(k) for k in ("format", "written_at", "accounts")}
    if not hmac.compare_digest(str(document.get("mac")), _mac(keyring, key_id, body)):
        raise InputError(
            f"the checkpoint {path} was altered: its signature does not match its content. "
            "Restore it from where you keep copies."
        )
    return document


def check_checkpoint(conn: psycopg.Connection, path: Path, keyring: LedgerKeyring) -> tuple[list, str]:
    """The problems found comparing the ledger with the heads in ``path``, and a note."""

    document = _read(path, keyring)
    recorded: dict[str, dict[str, Any]] = document["accounts"]
    when = document["written_at"]
    rows = {
        account: (entry_id, digest)
        for account, entry_id, digest in conn.execute(
            "SELECT t.account_id, t.id, t.entry_hash FROM billing.credit_transactions t "
            "JOIN unnest(%s::text[], %s::bigint[]) AS c (account_id, seq) "
            "ON t.account_id = c.account_id AND t.account_seq = c.seq",
            (list(recorded), [int(h["entries"]) for h in recorded.values()]),
        )
    }
    counts = dict(
        conn.execute(
            "SELECT account_id, count(*) FROM billing.credit_transactions WHERE account_id = ANY(%s) GROUP BY 1",
            (list(recorded),),
        ).fetchall()
    )
    problems = []
    for account, head in sorted(recorded.items()):
        found = rows.get(account)
        if found is None:
            problems.append(
                LedgerProblem(
                    account,
                    "checkpoint_missing_entries",
                    f"the checkpoint of {when} recorded {head['entries']} entries ending with entry {head['last_id']}; "
                    f"the ledger now has {counts.get(account, 0)}: entries were deleted",
                    head["last_id"],
                )
            )
        elif found != (head["last_id"], head["head"]):
            problems.append(
                LedgerProblem(
                    account,
                    "checkpoint_head_changed",
                    f"entry #{head['entries']} is entry {found[0]} with hash {found[1][:16]}…, but the checkpoint of "
                    f"{when} recorded entry {head['last_id']} with hash {head['head'][:16]}…: the ledger was "
                    "rewritten or re-chained up to there",
                    found[0],
                )
            )
    return problems, f"checkpoint {path} of {when} checked: {len(recorded)} accounts"
