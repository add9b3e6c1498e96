"""Ledger entries: their types, sign rules, rounding and the hash that chains them.

Validation happens here, before anything touches the database, so a bad batch is refused
whole with a message naming the entry, and nothing is written.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from enum import StrEnum
from collections.abc import Mapping
from typing import Any

from billing_pipeline.errors import InputError

MICRO = Decimal("0.000001")
# numeric(20, 6) holds 14 digits before the point.
MAX_ABS_AMOUNT = Decimal("99999999999999.999999")
GENESIS_HASH = "0" * 64


class EntryType(StrEnum):
    TOPUP = "topup"
    AUTO_TOPUP = "auto_topup"
    USAGE_DEDUCTION = "usage_deduction"
    SLA_CREDIT = "sla_credit"
    ADMIN_ADJUSTMENT = "admin_adjustment"
    REVERSAL = "reversal"


ENTRY_TYPES = {t.value: t for t in EntryType}
CREDITING_TYPES = {EntryType.TOPUP, EntryType.AUTO_TOPUP, EntryType.SLA_CREDIT}
DEBITING_TYPES = {EntryType.USAGE_DEDUCTION}


class LedgerInputError(InputError):
    """An entry that the ledger refuses; nothing of its batch was written."""


class IdempotencyConflict(InputError):
    """An idempotency key already posted with different content."""


def round_credits(amount: Decimal) -> Decimal:
    """Round half-even to micro-credits (contract section 1)."""
    return amount.quantize(MICRO, rounding=ROUND_HALF_EVEN)


def to_amount(value: Any, *, what: str = "amount") -> Decimal:
    """Parse a person's input (a string) into credits; refuses floats, NaN and infinity."""
    if isinstance(value, float):
        raise LedgerInputError(
            f"{what} {value!r} is a float; credits are exact decimals. Pass it as text, e.g. '{value}'."
        )
    try:
        amount = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except InvalidOperation:
        raise LedgerInputError(f"{what} {value!r} is not a number; write it like 25 or 12.50.") from None
    return amount


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
_quote = json.encoder.encode_basestring  # a JSON string literal, as _CANONICAL spells it


def canonical_json(value: Any) -> str:
    """One spelling of a JSON value, so that hashing it is repeatable."""
    return _CANONICAL.encode(value)


def _plain_json(reference: Mapping[str, Any], key: str) -> dict[str, Any]:
    if type(reference) is dict and not reference:
        return {}  # the common case, cheaply
    if not isinstance(reference, Mapping):
        raise LedgerInputError(f"entry {key!r}: reference must be a mapping, got {type(reference).__name__}.")

    def convert(value: Any) -> Any:
        if isinstance(value, float):
            raise LedgerInputError(
                f"entry {key!r}: reference holds the float {value!r}; store exact values as text."
            )
        if isinstance(value, (Decimal, datetime)):
            return str(value) if isinstance(value, Decimal) else value.isoformat()
        if isinstance(value, Mapping):
            return {str(k): convert(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [convert(v) for v in value]
        if value is None or isinstance(value, (str, int, bool)):
            return value
        raise LedgerInputError(f"entry {key!r}: reference holds a {type(value).__name__}, which is not JSON.")

    return convert(reference)


@dataclass(frozen=True)
class Entry:
    """One ledger entry to post. ``amount`` is signed: + credits the account, - debits it."""

    account_id: str
    type: str
    amount: Decimal
    idempotency_key: str
    reference: Mapping[str, Any] = field(default_factory=dict)
    reason: str | None = None
    actor: str | None = None

    def validated(self) -> "Entry":
        """This entry checked against the ledger's rules, its amount rounded to micro-credits."""
        key = self.idempotency_key
        if not isinstance(key, str) or not key.strip():
            raise LedgerInputError(
                f"an entry for account {self.account_id!r} has no idempotency key; "
                "every entry needs one, derived from what it pays for."
            )
        if len(key) > 200 or not key.isprintable():
            raise LedgerInputError(
                f"idempotency key {key[:60]!r}… must be printable text of at most 200 characters."
            )
        where = f"entry {key!r} (account {self.account_id!r})"
        if not isinstance(self.account_id, str) or not self.account_id.strip():
            raise LedgerInputError(f"entry {key!r} has no account id.")
        entry_type = ENTRY_TYPES.get(self.type)
        if entry_type is None:
            raise LedgerInputError(
                f"{where}: unknown type {self.type!r}; use one of {', '.join(t.value for t in EntryType)}."
            )
        amount = self.amount
        if type(amount) is not Decimal and not isinstance(amount, Decimal):
            raise LedgerInputError(
                f"{where}: amount {amount!r} is a {type(amount).__name__}; the ledger takes "
                "decimal.Decimal only, e.g. Decimal('12.50')."
            )
        if not amount.is_finite():
            raise LedgerInputError(f"{where}: amount {amount} is not a finite number.")
        amount = round_credits(amount)
        if amount == 0:
            raise LedgerInputError(f"{where}: amount is zero after rounding to micro-credits; nothing to post.")
        if abs(amount) > MAX_ABS_AMOUNT:
            raise LedgerInputError(f"{where}: amount {amount} is beyond the ledger's range (14 integer digits).")
        if entry_type in CREDITING_TYPES and amount < 0:
            raise LedgerInputError(f"{where}: a {entry_type} credits the account, so its amount must be positive, not {amount}.")
        if entry_type in DEBITING_TYPES and amount > 0:
            raise LedgerInputError(
                f"{where}: a {entry_type} debits the account, so its amount must be negative, not {amount}."
            )
        reason = (self.reason or "").strip() or None
        actor = (self.actor or "").strip() or None
        if entry_type is EntryType.ADMIN_ADJUSTMENT and (reason is None or actor is None):
            missing = " and ".join(n for n, v in (("a reason", reason), ("an actor", actor)) if v is None)
            raise LedgerInputError(f"{where}: an admin adjustment needs {missing}: say why, and who decided.")
        reference = _plain_json(self.reference, key)
        if entry_type is EntryType.REVERSAL and "reverses" not in reference:
            raise LedgerInputError(f"{where}: a reversal must name the entry it reverses in reference['reverses'].")
        return Entry(self.account_id, entry_type.value, amount, key, reference, reason, actor)


def entry_hash(
    *,
    prev_hash: str,
    account_id: str,
    account_seq: int,
    type: str,
    amount: Decimal,
    balance_after: Decimal,
    idempotency_key: str,
    reference_json: str,
    reason: str | None,
    actor: str | None,
    created_at: str,
) -> str:
    """SHA-256 over an entry's content and the previous entry's hash (tamper evidence).

    ``reference_json`` is ``canonical_json(reference)`` and ``created_at`` is
    ``timestamp_text(created_at)``: both computed once by the caller.
    """
    # Exactly canonical_json([...]) of these fields, spelled out because this runs once per entry.
    text = _quote
    content = (
        f"[{text(prev_hash)},{text(account_id)},{int(account_seq)},{text(type)},"
        f"\"{amount:.6f}\",\"{balance_after:.6f}\",{text(idempotency_key)},{text(reference_json)},"
        f"{'null' if reason is None else text(reason)},{'null' if actor is None else text(actor)},"
        f"{text(created_at)}]"
    )
    return hashlib.sha256(content.encode()).hexdigest()


def timestamp_text(moment: datetime) -> str:
    """The one spelling of an entry's creation time inside its hash."""
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")
