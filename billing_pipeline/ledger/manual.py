"""Entries a person posts (``billing topup``, ``billing adjust``, ``billing grant``): their keys from ``keys.py``,
exactly once across key formats.

The command line parses what was typed and calls these; it mints no key. A top-up's payment
reference and an adjustment's given key were once posted as bare keys; they are namespaced now
(``keys.py``). Keys are inside the entries' hashes, so the entries already posted keep their
keys, and repeating the same action must find them: before posting under the new key, the
earlier spellings (``keys.earlier_keys``) are looked up, and an entry found there is reported as
already posted (or refused, if it is not the same entry), as the ledger does for any key.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import psycopg

from billing_pipeline.ledger.entries import Entry, EntryType, IdempotencyConflict, round_credits
from billing_pipeline.ledger.keys import adjustment_key, earlier_keys, manual_topup_key, promotional_grant_key
from billing_pipeline.ledger.posting import PostResult, post_entry

_POSTED_UNDER = """
SELECT id, account_id, idempotency_key, type, amount, balance_after
FROM billing.credit_transactions WHERE idempotency_key = ANY(%s)
ORDER BY array_position(%s, idempotency_key) LIMIT 1
"""


def post_once(conn: psycopg.Connection, entry: Entry) -> PostResult:
    """Post ``entry`` unless it was posted under an earlier spelling of its key."""
    earlier = earlier_keys(entry.idempotency_key)
    if earlier:
        row = conn.execute(_POSTED_UNDER, (earlier, earlier), prepare=False).fetchone()
        if row is not None:
            prior = PostResult(*row, created=False)
            wanted = entry.validated()
            if (prior.account_id, prior.type, prior.amount) != (wanted.account_id, wanted.type, wanted.amount):
                raise IdempotencyConflict(
                    f"key {prior.idempotency_key!r} was already posted as entry {prior.entry_id} ({prior.account_id} "
                    f"{prior.type} {prior.amount}), not as {wanted.account_id} {wanted.type} {wanted.amount}. "
                    "Use a different reference (or key) for a different entry; nothing was posted."
                )
            return prior
    return post_entry(conn, entry)


DEFAULT_CURRENCY = "usd"


def topup_reference(payment_reference: str, amount: Decimal, currency: str = DEFAULT_CURRENCY) -> dict:
    """A paid top-up's reference: the payment's reference and what the customer paid
    (``paid``: amount and currency), which its paid grant keeps (docs/rules/ledger.md)."""
    return {
        "payment_reference": payment_reference,
        "paid": {"amount": f"{round_credits(amount)}", "currency": currency},
    }


def post_manual_topup(
    conn: psycopg.Connection,
    account_id: str,
    amount: Decimal,
    payment_reference: str,
    currency: str = DEFAULT_CURRENCY,
) -> PostResult:
    """Credit a payment received, once per payment reference."""
    entry = Entry(
        account_id,
        EntryType.TOPUP,
        amount,
        manual_topup_key(payment_reference),
        reference=topup_reference(payment_reference, amount, currency),
        actor="cli",
    )
    return post_once(conn, entry)


def post_adjustment(
    conn: psycopg.Connection, account_id: str, amount: Decimal, reason: str | None, actor: str | None, key: str | None
) -> PostResult:
    """An admin adjustment, once per (account, amount, reason, actor), or once per given key."""
    entry = Entry(
        account_id,
        EntryType.ADMIN_ADJUSTMENT,
        amount,
        adjustment_key(account_id, amount, reason, actor, key),
        reason=reason,
        actor=actor,
    )
    return post_once(conn, entry)


def post_promotional_grant(
    conn: psycopg.Connection,
    account_id: str,
    amount: Decimal,
    reference: str,
    reason: str,
    actor: str,
    *,
    expires_at: datetime | None = None,
    priority: int | None = None,
) -> PostResult:
    """Free credits given (docs/rules/ledger.md), once per reference. Terms not given keep the
    defaults (priority 10, no expiry); the posting opens the grant from ``reference.grant``."""
    terms: dict = {}
    if priority is not None:
        terms["priority"] = priority
    if expires_at is not None:
        terms["expires_at"] = expires_at.isoformat()
    entry = Entry(
        account_id,
        EntryType.PROMOTIONAL_GRANT,
        amount,
        promotional_grant_key(reference),
        reference={"grant_reference": reference, **({"grant": terms} if terms else {})},
        reason=reason,
        actor=actor,
    )
    return post_once(conn, entry)
