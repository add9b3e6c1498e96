"""Ledger entries: their types, sign rules, rounding and the keyed hash that chains them.

Validation happens here, before anything touches the database, so a bad batch is refused
whole with a message naming the entry, and nothing is written.

The chain is keyed (docs/rules/ledger.md): each entry's hash is HMAC-SHA256 under a secret that
lives outside the database, so someone with full database rights cannot recompute it after an
edit. The keys come from the environment (read by ``ledger_keyring``):

* ``BILLING_LEDGER_KEY``: the current secret (at least 32 characters); new entries are signed
  with it. Without it the ledger refuses to post or verify (a ``ConfigurationError``).
* ``BILLING_LEDGER_KEY_FILE``: a file holding that secret instead (surrounding whitespace
  ignored), e.g. the demo's ``.billing/ledger.key``. Either variable may be used; when both are
  set they must hold the same secret, else the ledger refuses to start (neither silently wins).
* ``BILLING_LEDGER_KEY_ID``: the current key's id, stored on every entry it signs (default: a
  fingerprint ``k-<12 hex>`` derived one-way from the secret).
* ``BILLING_LEDGER_RETIRED_KEYS``: ``id:secret,id:secret`` of earlier keys, used only to verify
  the entries they signed. Rotating = move the current key there, set a new current one.

Entries written before the chain was keyed (migration 0006) carry the key id
``legacy-sha256``: their hash is the old unkeyed SHA-256; ``billing verify`` accepts them only
below the boundary recorded by that migration and reports how many remain.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any

from billing_pipeline.core.errors import ConfigurationError, InputError

MICRO = Decimal("0.000001")
# numeric(20, 6) holds 14 digits before the point: the most a balance can ever hold.
MAX_ABS_AMOUNT = Decimal("99999999999999.999999")
# The most one entry may move (either sign): far above any real payment or month of usage, and
# far enough below MAX_ABS_AMOUNT that a balance cannot overflow from a handful of entries.
MAX_ENTRY_AMOUNT = Decimal("1000000000")
GENESIS_HASH = "0" * 64
LEGACY_KEY_ID = "legacy-sha256"
KEY_ENV, KEY_ID_ENV, RETIRED_KEYS_ENV = "BILLING_LEDGER_KEY", "BILLING_LEDGER_KEY_ID", "BILLING_LEDGER_RETIRED_KEYS"
KEY_FILE_ENV = "BILLING_LEDGER_KEY_FILE"
KEY_DOC = "docs/rules/ledger.md"  # "The keyed hash chain": where the key lives and how it rotates
MIN_KEY_LENGTH = 32
_KEY_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}", re.ASCII)


class EntryType(StrEnum):
    TOPUP = "topup"
    AUTO_TOPUP = "auto_topup"
    USAGE_DEDUCTION = "usage_deduction"
    SLA_CREDIT = "sla_credit"
    ADMIN_ADJUSTMENT = "admin_adjustment"
    REVERSAL = "reversal"
    PROMOTIONAL_GRANT = "promotional_grant"  # free credits given (docs/rules/ledger.md, "Grants")
    GRANT_EXPIRY = "grant_expiry"  # what an expired grant had left, leaving the balance


ENTRY_TYPES = {t.value: t for t in EntryType}
CREDITING_TYPES = {EntryType.TOPUP, EntryType.AUTO_TOPUP, EntryType.SLA_CREDIT, EntryType.PROMOTIONAL_GRANT}
DEBITING_TYPES = {EntryType.USAGE_DEDUCTION, EntryType.GRANT_EXPIRY}


class LedgerInputError(InputError):
    """An entry that the ledger refuses; nothing of its batch was written."""


class IdempotencyConflict(InputError):
    """An idempotency key already posted with different content."""


def round_credits(amount: Decimal) -> Decimal:
    """Round half-even to micro-credits (docs/rules/units.md)."""
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
            raise LedgerInputError(f"entry {key!r}: reference holds the float {value!r}; store exact values as text.")
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

    def validated(self) -> Entry:
        """This entry checked against the ledger's rules, its amount rounded to micro-credits."""
        return Entry(self.account_id, *self.checked_fields())

    def checked_key(self) -> str:
        """The idempotency key, once it and the account id pass the ledger's rules: the first of
        ``checked_fields``'s checks, and all that the batch path's statements before its ``COPY``
        need (``posting._dedupe_batch``)."""
        key = self.idempotency_key
        if not isinstance(key, str) or not key.strip():
            raise LedgerInputError(
                f"an entry for account {self.account_id!r} has no idempotency key; "
                "every entry needs one, derived from what it pays for."
            )
        if len(key) > 200 or not key.isprintable():
            raise LedgerInputError(f"idempotency key {key[:60]!r}… must be printable text of at most 200 characters.")
        if not isinstance(self.account_id, str) or not self.account_id.strip():
            raise LedgerInputError(f"entry {key!r} has no account id.")
        return key

    def checked_fields(self) -> tuple[str, Decimal, str, dict[str, Any], str | None, str | None]:
        """What ``validated`` checks, as the validated entry's fields after its account:
        ``(type, amount, idempotency_key, reference, reason, actor)``. The batch path reads them
        as it writes each entry, without building a second ``Entry``."""
        # Runs once per entry of every batch: the common path does no more than the checks, and
        # the messages (naming the entry) are only built for an entry that fails one.
        key = self.checked_key()
        entry_type = ENTRY_TYPES.get(self.type)
        if entry_type is None:
            raise LedgerInputError(
                f"{self._where()}: unknown type {self.type!r}; use one of {', '.join(t.value for t in EntryType)}."
            )
        type_ = entry_type.value
        amount = self.amount
        if type(amount) is not Decimal and not isinstance(amount, Decimal):
            raise LedgerInputError(
                f"{self._where()}: amount {amount!r} is a {type(amount).__name__}; the ledger takes "
                "decimal.Decimal only, e.g. Decimal('12.50')."
            )
        if not amount.is_finite():
            raise LedgerInputError(f"{self._where()}: amount {amount} is not a finite number.")
        amount = amount.quantize(MICRO, rounding=ROUND_HALF_EVEN)  # round_credits, inlined
        if not amount:
            raise LedgerInputError(f"{self._where()}: amount is zero after rounding to micro-credits; nothing to post.")
        if amount > MAX_ENTRY_AMOUNT or amount < -MAX_ENTRY_AMOUNT:
            raise LedgerInputError(
                f"{self._where()}: amount {amount} is more than one entry may move ({MAX_ENTRY_AMOUNT:,} credits); "
                "split it into several entries if it is really meant."
            )
        if amount < 0:
            if type_ in _CREDITING:
                raise LedgerInputError(
                    f"{self._where()}: a {entry_type} credits the account, so its amount must be positive, not {amount}."
                )
        elif type_ in _DEBITING:
            raise LedgerInputError(
                f"{self._where()}: a {entry_type} debits the account, so its amount must be negative, not {amount}."
            )
        reason, actor = self.reason, self.actor
        if reason is not None:
            reason = _plain_text(reason, "reason", self._where())
        if actor is not None:
            actor = _plain_text(actor, "actor", self._where())
        if type_ == "admin_adjustment" and (reason is None or actor is None):
            missing = " and ".join(n for n, v in (("a reason", reason), ("an actor", actor)) if v is None)
            raise LedgerInputError(f"{self._where()}: an admin adjustment needs {missing}: say why, and who decided.")
        reference = _plain_json(self.reference, key)
        if reference:
            if type_ == "reversal" and "reverses" not in reference:
                raise LedgerInputError(
                    f"{self._where()}: a reversal must name the entry it reverses in reference['reverses']."
                )
            if type_ == "grant_expiry" and type(reference.get("grant_entry_id")) is not int:
                raise LedgerInputError(_GRANT_EXPIRY_NAMES_GRANT.format(where=self._where()))
            if "grant" in reference or "paid" in reference:
                _check_grant_terms(reference, self._where())
        elif type_ == "reversal":
            raise LedgerInputError(
                f"{self._where()}: a reversal must name the entry it reverses in reference['reverses']."
            )
        elif type_ == "grant_expiry":
            raise LedgerInputError(_GRANT_EXPIRY_NAMES_GRANT.format(where=self._where()))
        return type_, amount, key, reference, reason, actor

    def _where(self) -> str:
        return f"entry {self.idempotency_key!r} (account {self.account_id!r})"


_CREDITING = frozenset(t.value for t in CREDITING_TYPES)
_DEBITING = frozenset(t.value for t in DEBITING_TYPES)
_GRANT_EXPIRY_NAMES_GRANT = (
    "{where}: a grant expiry must name the grant it expires in reference['grant_entry_id'] "
    "(the grant's entry id, an integer)."
)


def _check_grant_terms(reference: Mapping[str, Any], where: str) -> None:
    """A grant's terms as a writer overrides them (``reference.grant``: priority, expires_at) and
    what a paid top-up cost (``reference.paid``: amount, currency), checked before posting: the
    posting hook reads them with SQL casts, which must not fail half-way."""
    from billing_pipeline.core.times import parse_time

    terms = reference.get("grant")
    if terms is not None:
        if not isinstance(terms, Mapping) or set(terms) - {"priority", "expires_at"}:
            raise LedgerInputError(
                f"{where}: reference['grant'] must be a mapping of 'priority' (an integer) and 'expires_at' (ISO time)."
            )
        priority = terms.get("priority")
        if priority is not None and (type(priority) is not int or abs(priority) > 1_000_000):
            raise LedgerInputError(
                f"{where}: a grant's priority must be an integer (lower burns first), not {priority!r}."
            )
        expires = terms.get("expires_at")
        if expires is not None:
            try:
                parse_time(expires, what=f"{where}: the grant's expires_at")
            except InputError as exc:
                raise LedgerInputError(str(exc)) from None
    paid = reference.get("paid")
    if paid is not None:
        amount = paid.get("amount") if isinstance(paid, Mapping) else None
        currency = paid.get("currency") if isinstance(paid, Mapping) else None
        try:
            ok = isinstance(amount, str) and Decimal(amount).is_finite() and Decimal(amount) >= 0
        except InvalidOperation:
            ok = False
        if not ok or not (currency is None or (isinstance(currency, str) and currency.isalpha())):
            raise LedgerInputError(
                f"{where}: reference['paid'] must be {{'amount': '12.34', 'currency': 'usd'}} (what the customer paid), "
                f"not {paid!r}."
            )


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
    key_id: str = LEGACY_KEY_ID,
    key: bytes | None = None,
) -> str:
    """The hash chaining an entry to the one before it (tamper evidence).

    With a ``key``: HMAC-SHA256 under that key over the key id, the previous entry's hash and
    the entry's content. Without one (``key_id`` ``legacy-sha256``, entries written before the
    chain was keyed): plain SHA-256 over the previous hash and the content.
    ``reference_json`` is ``canonical_json(reference)`` and ``created_at`` is
    ``timestamp_text(created_at)``: both computed once by the caller.
    """
    content = _hash_content(
        prev_hash,
        account_id,
        account_seq,
        type,
        f"{amount:.6f}",
        f"{balance_after:.6f}",
        idempotency_key,
        reference_json,
        reason,
        actor,
        created_at,
    )
    if key is None:
        if key_id != LEGACY_KEY_ID:
            raise ConfigurationError(f"ledger key {key_id!r} is needed to hash this entry but was not given.")
        return hashlib.sha256(f"[{content}".encode()).hexdigest()
    return hmac.new(key, f"[{_quote(key_id)},{content}".encode(), hashlib.sha256).hexdigest()


def _hash_content(
    prev_hash: str,
    account_id: str,
    account_seq: int,
    type: str,
    amount_text: str,
    balance_text: str,
    idempotency_key: str,
    reference_json: str,
    reason: str | None,
    actor: str | None,
    created_at: str,
) -> str:
    """What an entry's hash covers after its key id: exactly ``canonical_json([...])`` of these
    fields without the opening bracket, spelled out because this runs once per entry. The
    amounts are given as their six-place text (``f"{amount:.6f}"``)."""
    text = _quote
    return (
        f"{text(prev_hash)},{text(account_id)},{int(account_seq)},{text(type)},"
        f'"{amount_text}","{balance_text}",{text(idempotency_key)},{text(reference_json)},'
        f"{'null' if reason is None else text(reason)},{'null' if actor is None else text(actor)},"
        f"{text(created_at)}]"
    )


_SHA256_BLOCK = 64


def keyed_entry_hasher(key_id: str, key: bytes) -> Callable[..., str]:
    """``entry_hash`` under one ledger key, for a batch: the same hashes, computed faster.

    HMAC-SHA256 (RFC 2104) is SHA-256 over ``key ^ opad`` and the SHA-256 of ``key ^ ipad`` and
    the message. Both pads, and the message's first part (the key id), are hashed once here;
    each entry then costs two copies of a SHA-256 state and no HMAC set-up. The returned
    function takes ``_hash_content``'s arguments (amounts as their six-place text)."""
    block = hashlib.sha256(key).digest() if len(key) > _SHA256_BLOCK else key
    block = block.ljust(_SHA256_BLOCK, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))
    inner.update(f"[{_quote(key_id)},".encode())

    def hasher(*content: Any) -> str:
        i = inner.copy()
        i.update(_hash_content(*content).encode())
        o = outer.copy()
        o.update(i.digest())
        return o.hexdigest()

    return hasher


def timestamp_text(moment: datetime) -> str:
    """The one spelling of an entry's creation time inside its hash."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


_BIDI_CONTROLS = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")
MAX_TEXT_LENGTH = 500


def _plain_text(value: Any, what: str, where: str) -> str | None:
    """A reason or actor: one line of printable text, or None when empty."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise LedgerInputError(f"{where}: {what} must be text, not {type(value).__name__}.")
    value = value.strip()
    if not value:
        return None
    bad = next((c for c in value if not c.isprintable() or c in _BIDI_CONTROLS), None)
    if bad is not None:
        raise LedgerInputError(
            f"{where}: {what} contains the control character U+{ord(bad):04X}; write one line of plain "
            "text (no newlines, tabs or terminal escape codes)."
        )
    if len(value) > MAX_TEXT_LENGTH:
        raise LedgerInputError(f"{where}: {what} is {len(value)} characters long; at most {MAX_TEXT_LENGTH}.")
    return value


# --- the ledger key --------------------------------------------------------------------------


@dataclass(frozen=True)
class LedgerKeyring:
    """The ledger's HMAC keys: the current one (signs new entries) and retired ones (verify only)."""

    current_id: str
    keys: Mapping[str, bytes] = field(repr=False)

    @property
    def current_key(self) -> bytes:
        return self.keys[self.current_id]


def key_fingerprint(secret: str) -> str:
    """The default id of a key: one-way, so printing it reveals nothing usable."""
    return "k-" + hmac.new(secret.encode(), b"satusky ledger key id", hashlib.sha256).hexdigest()[:12]


def _check_key(secret: str, what: str) -> bytes:
    if len(secret) < MIN_KEY_LENGTH:
        raise ConfigurationError(
            f"{what} is {len(secret)} characters long; the ledger key must have at least {MIN_KEY_LENGTH} "
            "(generate one with `openssl rand -hex 32`)."
        )
    return secret.encode()


def _check_key_id(key_id: str, what: str) -> str:
    if not _KEY_ID_PATTERN.fullmatch(key_id) or key_id == LEGACY_KEY_ID:
        raise ConfigurationError(
            f"{what} {key_id!r} is not a usable key id: use 1-64 letters, digits, '.', '_' or '-' "
            f"(and not {LEGACY_KEY_ID!r})."
        )
    return key_id


def _missing_key_advice() -> str:
    """What to do when no key is set. A demo's key file already signs entries: point at it, since a
    newly generated key would make every entry it signed fail verification as ``unknown_key``."""
    from billing_pipeline.db.connection import state_dir  # lazy: the ledger does not need the database module

    demo_key = state_dir() / "ledger.key"
    if demo_key.is_file():
        return (
            f"A ledger key file exists at {demo_key} (written by scripts/demo): use it with "
            f"`export {KEY_FILE_ENV}={demo_key}` (or `source {demo_key.parent}/demo.env`). Do not generate a new "
            "key: the entries already posted are signed with this one."
        )
    return (
        f"Set {KEY_ENV} to a random secret of at least {MIN_KEY_LENGTH} characters (e.g. `openssl rand -hex 32`), "
        f"or {KEY_FILE_ENV} to a file holding it."
    )


def _read_key_file(path: str) -> str:
    try:
        secret = Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigurationError(
            f"{KEY_FILE_ENV}={path}: cannot read the ledger key file ({exc.strerror or exc}). "
            f"Point {KEY_FILE_ENV} at the file holding the ledger key, or unset it and set {KEY_ENV}."
        ) from None
    if not secret:
        raise ConfigurationError(f"{KEY_FILE_ENV}={path}: the ledger key file is empty; it must hold the key.")
    return secret


def _current_secret(from_env: str | None, key_file: str | None) -> str | None:
    """The current key from ``BILLING_LEDGER_KEY`` and/or ``BILLING_LEDGER_KEY_FILE``: both may be
    set only to the same secret (compared in constant time; neither is printed)."""
    from_env = from_env or None  # used as given, as before the key file existed (its id derives from it)
    from_file = _read_key_file(key_file.strip()) if key_file and key_file.strip() else None
    if from_env and from_file and not hmac.compare_digest(from_env.encode(), from_file.encode()):
        raise ConfigurationError(
            f"{KEY_ENV} and {KEY_FILE_ENV} ({key_file.strip()}) are both set, to different keys: the ledger would not "
            f"know which one signs. Unset one of them (keep the key the ledger's entries are signed with; "
            f"`billing verify` tells). See {KEY_DOC}."
        )
    return from_env or from_file


@lru_cache(maxsize=8)
def _keyring(current: str | None, current_id: str | None, retired: str | None) -> LedgerKeyring:
    if not current:
        raise ConfigurationError(
            f"{KEY_ENV} (or {KEY_FILE_ENV}) is not set: the ledger signs every entry with this secret "
            f"(HMAC-SHA256), kept outside the database. {_missing_key_advice()} See {KEY_DOC}."
        )
    keys: dict[str, bytes] = {}
    for item in (retired or "").split(","):
        if not item.strip():
            continue
        key_id, sep, secret = item.strip().partition(":")
        if not sep:
            raise ConfigurationError(
                f"{RETIRED_KEYS_ENV} must list keys as id:secret,id:secret; an item has no ':' (item {len(keys) + 1})."
            )
        keys[_check_key_id(key_id, f"{RETIRED_KEYS_ENV}: key id")] = _check_key(
            secret, f"{RETIRED_KEYS_ENV}: key {key_id!r}"
        )
    key_id = _check_key_id(current_id, KEY_ID_ENV) if current_id else key_fingerprint(current)
    secret = _check_key(current, KEY_ENV)
    if keys.get(key_id, secret) != secret:
        raise ConfigurationError(
            f"key id {key_id!r} names two different secrets ({KEY_ENV} and {RETIRED_KEYS_ENV}); "
            "a key id must always mean the same key."
        )
    keys[key_id] = secret
    return LedgerKeyring(key_id, keys)


def ledger_keyring() -> LedgerKeyring:
    """The ledger keys from the environment (``BILLING_LEDGER_KEY`` or ``BILLING_LEDGER_KEY_FILE``);
    a ConfigurationError naming the variable if unset, unreadable or contradictory."""
    current = _current_secret(os.environ.get(KEY_ENV), os.environ.get(KEY_FILE_ENV))
    return _keyring(current, os.environ.get(KEY_ID_ENV), os.environ.get(RETIRED_KEYS_ENV))


def ensure_demo_ledger_key(state_dir: Path | str) -> Path:
    """For the demo only: a ledger key kept in ``<state_dir>/ledger.key`` (created once, mode 0600).
    Returns the file; the demo exports it as ``BILLING_LEDGER_KEY_FILE`` (and writes it into
    ``demo.env``) for its processes."""
    path = Path(state_dir) / "ledger.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another demo process made it a moment ago
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32) + "\n")
    return path
