"""Posting entries to the append-only ledger, exactly once, with the balance cache in step.

How one batch is posted, in one transaction:

1. Each entry's idempotency key and account id are checked, and the batch's repeated keys
   compared (``_dedupe_batch``); the rest of each entry is validated (``Entry.checked_fields``,
   the same rules and messages as ``Entry.validated``) as it is written in step 4. An entry
   refused at either point refuses the whole batch: the error is raised inside the transaction,
   which then writes nothing.
2. The ``credits`` rows of the batch's accounts are locked in account order (``FOR UPDATE``),
   which serialises writers per account and cannot deadlock between batches.
3. After the lock, a new statement reads each account's last entry (its sequence number,
   balance and hash) and the idempotency keys already posted; a key seen before is reported as
   a duplicate, or refused if its content differs.
4. New rows get consecutive per-account sequence numbers, running balances and hashes chained
   under the current ledger key (HMAC, ``entries.ledger_keyring``), are written with one
   ``COPY``, and the cache is set from the running balances.
5. The new entries' grants, draws and debts are written (``grants.apply_staged_grants``,
   set-based, over the rows ``grants.stage_new_entries`` read back with their ids).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

import psycopg

from billing_pipeline.core.clock import system_now
from billing_pipeline.core.errors import ConfigurationError
from billing_pipeline.core.gc_pause import cyclic_gc_paused
from billing_pipeline.ledger.entries import (
    GENESIS_HASH,
    LEGACY_KEY_ID,
    MAX_ABS_AMOUNT,
    MICRO,
    Entry,
    IdempotencyConflict,
    LedgerInputError,
    LedgerKeyring,
    canonical_json,
    entry_hash,
    keyed_entry_hasher,
    ledger_keyring,
    timestamp_text,
)
from billing_pipeline.ledger.grants import apply_staged_grants, stage_new_entries

# _NO_GENERIC_PLANS: statements over credit_transactions are planned on every call, never as
# a server-side prepared statement. A generic plan made while the ledger was small (a hash join
# over a sequential scan) would otherwise be kept as the ledger grows, and each post would then
# read the whole table.
KEY_SEPARATOR = "\x1f"  # idempotency keys may not contain control characters
COPY_COLUMNS = (
    "account_id, account_seq, type, amount, balance_after, idempotency_key, "
    "reference, reason, actor, created_at, prev_hash, entry_hash, key_id"
)


@dataclass(frozen=True)
class PostResult:
    """What happened to one entry. ``created`` is False when its key had been posted before."""

    entry_id: int
    account_id: str
    idempotency_key: str
    type: str
    amount: Decimal
    balance_after: Decimal
    created: bool


_ZERO = Decimal("0.000000")


@dataclass
class _AccountHead:
    seq: int
    balance: Decimal
    hash: str
    key_id: str | None = None  # who signed the head (None: no entries yet)
    entry_id: int | None = None
    content: list | None = None  # the head entry's other columns, to check its signature


def _dedupe_batch(entries: Sequence[Entry]) -> list[Entry]:
    """The batch's distinct entries; the same key twice must mean the same entry.

    Also the first part of validation, the part the statements before the ``COPY`` need: each
    entry's idempotency key and account id (an entry failing it is refused with ``validated``'s
    own message). The rest of each entry is validated as it is written (``_chained_rows``); a
    key given twice is validated here, both times, so the two are compared as they would be
    posted (rounded)."""
    by_key: dict[str, Entry] = {}
    for entry in entries:
        key = entry.checked_key()  # raises, naming the entry
        prior = by_key.setdefault(key, entry)
        if prior is entry:
            continue
        first, again = prior.validated(), entry.validated()
        if (first.account_id, first.type, first.amount) != (again.account_id, again.type, again.amount):
            raise IdempotencyConflict(
                f"idempotency key {key!r} appears twice in one batch with different "
                f"content ({first.account_id} {first.type} {first.amount} vs "
                f"{again.account_id} {again.type} {again.amount}); nothing was posted."
            )
    return list(by_key.values())


def _lock_accounts(cur: psycopg.Cursor, accounts: list[str]) -> None:
    cur.execute(
        "INSERT INTO billing.credits (account_id) SELECT id FROM billing.accounts WHERE id = ANY(%s) "
        "ON CONFLICT (account_id) DO NOTHING",
        (accounts,),
    )
    locked = {
        row[0]
        for row in cur.execute(
            "SELECT account_id FROM billing.credits WHERE account_id = ANY(%s) ORDER BY account_id FOR UPDATE",
            (accounts,),
        )
    }
    unknown = sorted(set(accounts) - locked)
    if unknown:
        shown = ", ".join(repr(a) for a in unknown[:10]) + (" …" if len(unknown) > 10 else "")
        raise LedgerInputError(
            f"unknown account(s) {shown}: not in billing.accounts. Create the account first; "
            "nothing of this batch was posted."
        )


def _account_heads(cur: psycopg.Cursor, accounts: list[str]) -> dict[str, _AccountHead]:
    # Read after the lock, in a statement of its own, so it sees every entry committed before.
    rows = cur.execute(
        """
        SELECT a.account_id, t.account_seq, t.balance_after, t.entry_hash, t.key_id, t.id,
               t.prev_hash, t.type, t.amount, t.idempotency_key, t.reference, t.reason, t.actor, t.created_at
        FROM unnest(%s::text[]) AS a (account_id)
        LEFT JOIN LATERAL (
            SELECT account_seq, balance_after, entry_hash, key_id, id,
                   prev_hash, type, amount, idempotency_key, reference, reason, actor, created_at
            FROM billing.credit_transactions t
            WHERE t.account_id = a.account_id
            ORDER BY account_seq DESC
            LIMIT 1
        ) t ON true
        """,
        (accounts,),
        prepare=False,  # see _NO_GENERIC_PLANS
    ).fetchall()
    heads = {}
    for account, seq, balance, h, key_id, entry_id, *content in rows:
        # Six decimal places whatever the column gives (_chained_rows spells balances with str()).
        heads[account] = _AccountHead(seq or 0, (balance or _ZERO).quantize(MICRO), h or GENESIS_HASH, key_id, entry_id)
        if key_id is not None:
            heads[account].content = content
    return heads


def _signed_with(account: str, head: _AccountHead, secret: bytes) -> bool:
    prev_hash, type_, amount, key, reference, reason, actor, created_at = head.content
    return head.hash == entry_hash(
        prev_hash=prev_hash,
        account_id=account,
        account_seq=head.seq,
        type=type_,
        amount=amount,
        balance_after=head.balance,
        idempotency_key=key,
        reference_json=canonical_json(reference),
        reason=reason,
        actor=actor,
        created_at=timestamp_text(created_at),
        key_id=head.key_id,
        key=secret,
    )


def _refuse_foreign_heads(heads: dict[str, _AccountHead], keyring: LedgerKeyring) -> None:
    """Refuse to sign onto a chain whose head was signed by a key this process does not hold.

    Signing on anyway would chain entries to a head this process cannot verify, and a wrong
    ``BILLING_LEDGER_KEY`` would go unnoticed until ``billing verify`` reports ``unknown_key``.
    The head's HMAC is recomputed (one per account of the batch), so the same key id set by hand
    over another secret is caught too. Legacy heads (before the keyed chain) need no key."""
    for account, head in sorted(heads.items()):
        if head.key_id is None or head.key_id == LEGACY_KEY_ID:
            continue
        secret = keyring.keys.get(head.key_id)
        if secret is not None and _signed_with(account, head, secret):
            continue
        other = (
            "; the key held under that id is another secret, or the entry was altered (run `billing verify`)"
            if secret is not None
            else ""
        )
        raise ConfigurationError(
            f"account {account!r}: its chain head (entry {head.entry_id}) is signed by ledger key {head.key_id!r}, "
            f"which this process does not hold (BILLING_LEDGER_KEY is key {keyring.current_id!r}{other}); set "
            f"BILLING_LEDGER_KEY to the ledger's key, or add {head.key_id}:SECRET to BILLING_LEDGER_RETIRED_KEYS "
            "after a rotation. Nothing was posted."
        )


def _key_list(keys: Iterable[str]) -> str:
    # One text parameter split server-side: far cheaper than adapting a 100,000-element array.
    return KEY_SEPARATOR.join(keys)


def _already_posted(cur: psycopg.Cursor, entries: list[Entry]) -> dict[str, PostResult]:
    rows = cur.execute(
        "SELECT id, account_id, idempotency_key, type, amount, balance_after "
        "FROM billing.credit_transactions WHERE idempotency_key = ANY(string_to_array(%s, %s))",
        (_key_list(e.idempotency_key for e in entries), KEY_SEPARATOR),
        prepare=False,  # see _NO_GENERIC_PLANS
    ).fetchall()
    posted = {r[2]: PostResult(*r, created=False) for r in rows}
    for entry in entries if posted else ():
        prior = posted.get(entry.idempotency_key)
        if prior is None:
            continue
        entry = entry.validated()  # a key posted before: compared as it would be posted (rounded)
        if (prior.account_id, prior.type, prior.amount) != (entry.account_id, entry.type, entry.amount):
            raise IdempotencyConflict(
                f"idempotency key {entry.idempotency_key!r} was already posted as entry {prior.entry_id} "
                f"({prior.account_id} {prior.type} {prior.amount}), not as {entry.account_id} {entry.type} "
                f"{entry.amount}. Use a different key for a different entry; nothing was posted."
            )
    return posted


# The posting's statements are few and their row estimates poor (temporary tables, arrays):
# JIT compilation, which PostgreSQL starts above a cost estimate, took longer (0.4 s for a
# 100,000-entry batch) than the statement it compiled, and the default work_mem sent the
# batch's sorts to disk. Both are set for the posting's transaction (or savepoint) only, and
# put back before it ends, so a caller's own transaction keeps its settings.
_POSTING_WORK_MEM = "64MB"


def _plan_settings(cur: psycopg.Cursor) -> tuple[str, str]:
    row = cur.execute(
        "SELECT current_setting('jit'), current_setting('work_mem'), set_config('jit', 'off', true), "
        "set_config('work_mem', CASE WHEN pg_size_bytes(current_setting('work_mem')) < pg_size_bytes(%s) "
        "THEN %s ELSE current_setting('work_mem') END, true)",
        (_POSTING_WORK_MEM, _POSTING_WORK_MEM),
    ).fetchone()
    return row[0], row[1]


def _restore_settings(cur: psycopg.Cursor, previous: tuple[str, str]) -> None:
    cur.execute("SELECT set_config('jit', %s, true), set_config('work_mem', %s, true)", previous)


def post_entries(conn: psycopg.Connection, entries: Iterable[Entry]) -> list[PostResult]:
    """Post a batch in one transaction; returns one result per given entry, in order.

    An entry whose idempotency key was posted before is not written again: its result has
    ``created=False`` and describes the existing entry. An entry the ledger refuses refuses the
    whole batch (``LedgerInputError`` naming it); nothing is written.
    """
    with cyclic_gc_paused():  # a large batch allocates ~10 objects per entry, none in a cycle
        return _post_entries(conn, list(entries))


def _post_entries(conn: psycopg.Connection, given: list[Entry]) -> list[PostResult]:
    if not given:
        return []
    keyring = ledger_keyring()  # before any SQL: no key, no posting
    batch = _dedupe_batch(given)  # keys and accounts checked; the rest as each entry is written
    accounts = sorted({e.account_id for e in batch})
    now = system_now()
    with conn.transaction(), conn.cursor() as cur:
        previous = _plan_settings(cur)
        _lock_accounts(cur, accounts)
        heads = _account_heads(cur, accounts)
        _refuse_foreign_heads(heads, keyring)
        results = _already_posted(cur, batch)
        new_rows, new_ids = _write(
            cur, _chained_rows(batch, results, heads, now, keyring.current_id, keyring.current_key), heads
        )
        created = [
            PostResult(entry_id, account, key, type_, amount, balance, True)
            for entry_id, (account, _, type_, amount, balance, key) in zip(new_ids, new_rows)
        ]
        if new_rows:
            touched = sorted({row[0] for row in new_rows})
            last_ids = {}
            for row, entry_id in zip(new_rows, new_ids):
                last_ids[row[0]] = entry_id  # rows are in sequence order per account
            cur.execute(
                """
                UPDATE billing.credits AS c
                SET balance = v.balance, last_transaction_id = v.last_id, updated_at = now()
                FROM unnest(%s::text[], %s::numeric[], %s::bigint[]) AS v (account_id, balance, last_id)
                WHERE c.account_id = v.account_id
                """,
                (touched, [heads[a].balance for a in touched], [last_ids[a] for a in touched]),
            )
            apply_staged_grants(cur)  # grants and draws of the rows staged by _write (grants.py)
        _restore_settings(cur, previous)
    if not results and len(batch) == len(given):  # every entry new, none twice: written in order
        return created
    results.update((result.idempotency_key, result) for result in created)
    returned: list[PostResult] = []
    seen: set[str] = set()
    for entry in given:  # a key repeated within the batch is reported as the duplicate it is
        result = results[entry.idempotency_key]
        returned.append(replace(result, created=False) if entry.idempotency_key in seen else result)
        seen.add(entry.idempotency_key)
    return returned


def _chained_rows(
    batch: list[Entry],
    posted: dict[str, PostResult],
    heads: dict[str, _AccountHead],
    now: datetime,
    key_id: str,
    key: bytes,
) -> Iterator[tuple[str, tuple]]:
    """The batch's new entries as ``(COPY text line, row)``: each account's next sequence number,
    running balance and hash chained (under ``key``) to its previous entry; the row is
    ``(account_id, account_seq, type, amount, balance_after, idempotency_key)``. Each head's
    sequence number, balance, hash and key id advance as rows are produced. A balance that
    would leave the ledger's range refuses the whole batch.

    The line is the table row in COPY's text format, built from the same text the hash covers
    (the amounts' six-place spelling, the reference's canonical JSON, the time's ISO spelling),
    so nothing is converted twice."""
    now_text = timestamp_text(now)
    hasher = keyed_entry_hasher(key_id, key)
    tail = f"\t{_copy_text(now_text)}\t"  # created_at, then prev_hash
    key_id_text = _copy_text(key_id)
    account_text: dict[str, str] = {}
    for entry in batch:
        if entry.idempotency_key in posted:
            continue
        # Validated here, as the COPY streams (the server inserts the rows already sent while
        # Python checks the next ones): a refused entry raises inside the transaction, which
        # then writes nothing.
        type_, amount, key_, reference, reason, actor = entry.checked_fields()
        account = entry.account_id
        head = heads[account]
        seq, balance, prev_hash = head.seq + 1, head.balance + amount, head.hash
        if balance > MAX_ABS_AMOUNT or balance < _MIN_BALANCE:
            raise LedgerInputError(
                f"entry {key_!r} would take account {account!r}'s balance from "
                f"{head.balance} to {balance}, beyond what the ledger can hold (±{MAX_ABS_AMOUNT}); "
                "nothing of this batch was posted."
            )
        reference_json = canonical_json(reference) if reference else "{}"
        # Both have exactly six decimal places (the amount is rounded to micro-credits, the head's
        # balance read as numeric(20, 6) and their sum keeps the exponent), so str() spells them
        # as f"{:.6f}" does (entries.entry_hash), four times faster.
        amount_text, balance_text = str(amount), str(balance)
        digest = hasher(
            prev_hash,
            account,
            seq,
            type_,
            amount_text,
            balance_text,
            key_,
            reference_json,
            reason,
            actor,
            now_text,
        )
        head.seq, head.balance, head.hash, head.key_id = seq, balance, digest, key_id
        acct = account_text.get(account)
        if acct is None:
            acct = account_text[account] = _copy_text(account)
        line = (
            f"{acct}\t{seq}\t{type_}\t{amount_text}\t{balance_text}\t{_copy_text(key_)}\t"
            f"{_copy_text(reference_json)}\t{_COPY_NULL if reason is None else _copy_text(reason)}\t"
            f"{_COPY_NULL if actor is None else _copy_text(actor)}{tail}{prev_hash}\t{digest}\t{key_id_text}\n"
        )
        yield line, (account, seq, type_, amount, balance, key_)


_MIN_BALANCE = -MAX_ABS_AMOUNT
_HIGHEST_ID = "SELECT coalesce(max(id), -9223372036854775808) FROM billing.credit_transactions"
_COPY_NULL = "\\N"
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"})
_COPY_LINES_PER_WRITE = 1000


def _copy_text(value: str) -> str:
    """A text value as COPY's text format spells it: backslash, newline, carriage return and tab
    escaped (validated entries hold no control characters, but a reference's JSON may hold a
    backslash)."""
    if "\\" in value or "\n" in value or "\r" in value or "\t" in value:
        return value.translate(_COPY_ESCAPES)
    return value


def _write(
    cur: psycopg.Cursor, new_rows: Iterator[tuple[str, tuple]], heads: dict[str, _AccountHead]
) -> tuple[list[tuple], list[int]]:
    """COPY the rows as they are produced (the server inserts while Python hashes the next ones)
    and return them with the ids the database gave them. ``heads`` are the batch's accounts
    (locked)."""
    # Every id the COPY takes is above the highest one now: ids come from an ascending sequence.
    after_id = cur.execute(_HIGHEST_ID).fetchone()[0]
    rows: list[tuple] = []
    try:
        with cur.copy(f"COPY billing.credit_transactions ({COPY_COLUMNS}) FROM STDIN") as copy:
            lines: list[str] = []
            for line, row in new_rows:
                lines.append(line)
                rows.append(row)
                if len(lines) == _COPY_LINES_PER_WRITE:
                    copy.write("".join(lines))
                    lines.clear()
            if lines:
                copy.write("".join(lines))
    except psycopg.errors.UniqueViolation as exc:
        # Same-account races are serialised by the lock; this is a key reused for another account
        # by a writer that committed after our check.
        raise IdempotencyConflict(
            f"an idempotency key of this batch was posted concurrently for another account "
            f"({exc.diag.message_detail}); nothing was posted."
        ) from None
    if not rows:
        return rows, []
    # The ids the database gave, read once for the results and the grants: the new entries of
    # the batch's accounts above the highest id before the COPY (grants.stage_new_entries), in id
    # order. A COPY takes its rows' ids in the order it reads them, so that is the rows' order;
    # checked (account and sequence number of each), else matched by them.
    staged = sorted(stage_new_entries(cur, after_id, sorted(heads)))
    if [(account, seq) for _, account, seq in staged] == [row[:2] for row in rows]:
        return rows, [entry_id for entry_id, _, _ in staged]
    id_of = {(account, seq): entry_id for entry_id, account, seq in staged}
    return rows, [id_of[row[0], row[1]] for row in rows]


def post_entry(conn: psycopg.Connection, entry: Entry) -> PostResult:
    """Post one entry in its own transaction (or the caller's)."""
    return post_entries(conn, [entry])[0]


def balance_of(conn: psycopg.Connection, account_id: str) -> Decimal:
    """The account's current balance (from the cache, which equals the ledger at every commit)."""
    row = conn.execute(
        "SELECT a.id, c.balance FROM billing.accounts a LEFT JOIN billing.credits c ON c.account_id = a.id "
        "WHERE a.id = %s",
        (account_id,),
    ).fetchone()
    if row is None:
        raise LedgerInputError(f"unknown account {account_id!r}: not in billing.accounts.")
    return row[1] if row[1] is not None else Decimal("0.000000")
