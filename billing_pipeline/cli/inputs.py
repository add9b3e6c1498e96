"""Every value a person types on the `billing` command line, parsed in one place.

Each parser takes the raw text and returns the value, or raises ``InputError`` (exit 2) with one
line that names the option, quotes what was given (escaped, so control characters cannot reach
the terminal) and says what to write instead. Nothing here touches the database.

Rules, for amounts: ASCII digits only (no other scripts' digits, no ``_``, no exponent), an
optional sign and at most six decimals, at most ``MAX_ENTRY_AMOUNT`` credits per entry. For
times: ISO 8601 (``2026-11-24T10:00``, ``...Z`` or with an offset; naive = UTC). For months:
``YYYY-MM`` between 1970-01 and 9998-12. For free text (reason, actor, references): one line of
printable text, no control characters, at most 500 characters.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal

from billing_pipeline.core.errors import InputError
from billing_pipeline.ledger.entries import _BIDI_CONTROLS, MAX_ENTRY_AMOUNT, MAX_TEXT_LENGTH

_AMOUNT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)", re.ASCII)
_ISO_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[T ][0-9]{2}(?::[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?)?)?"
    r"(?:Z|[+-][0-9]{2}:?[0-9]{2})?",
    re.ASCII,
)
_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})", re.ASCII)
_INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)
MAX_INPUT_LENGTH = 64
MIN_YEAR, MAX_YEAR = 1970, 9998
MAX_LIMIT = 100_000


def shown(text: object, length: int = 40) -> str:
    """``text`` quoted for an error message: escapes visible, long input cut."""
    text = str(text)
    return repr(text[:length] + ("…" if len(text) > length else ""))


def parse_amount(text: str, *, what: str = "amount", positive: bool = False) -> Decimal:
    """Credits typed by a person: a plain ASCII decimal with at most six decimals."""
    value = str(text).strip()
    if value.lower().lstrip("+-") in ("nan", "snan", "inf", "infinity"):
        raise InputError(f"{what} {shown(text)} is not a finite number; write a plain decimal, e.g. 25 or 12.50.")
    if len(value) > MAX_INPUT_LENGTH or not _AMOUNT.fullmatch(value):
        raise InputError(
            f"{what} {shown(text)} is not a number the ledger takes: write a plain decimal with ASCII "
            "digits, e.g. 25 or 12.50 (no exponent, no '_' or thousands separators)."
        )
    amount = Decimal(value)
    if -amount.as_tuple().exponent > 6:
        raise InputError(
            f"{what} {shown(text)} has more than six decimals; credits are counted in micro-credits (0.000001)."
        )
    if amount == 0:
        raise InputError(f"{what} is zero; there is nothing to post.")
    if positive and amount < 0:
        raise InputError(f"{what} {shown(text)} must be positive.")
    if abs(amount) > MAX_ENTRY_AMOUNT:
        raise InputError(f"{what} {shown(text)} is more than one entry may move ({MAX_ENTRY_AMOUNT:,} credits).")
    return amount


def parse_time(text: str, *, what: str = "--now") -> datetime:
    """An ISO 8601 instant as an aware UTC datetime (naive input is taken as UTC)."""
    value = str(text).strip()
    if len(value) > MAX_INPUT_LENGTH or not _ISO_TIME.fullmatch(value):
        raise InputError(f"{what} {shown(text)} is not an ISO 8601 time; write it e.g. 2026-11-24T10:00Z.")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InputError(
            f"{what} {shown(text)} is not a valid time ({exc}); write it in ISO 8601, e.g. 2026-11-24T10:00Z."
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    if not MIN_YEAR <= parsed.year <= MAX_YEAR:
        raise InputError(f"{what} {shown(text)} is outside the years {MIN_YEAR}-{MAX_YEAR}.")
    return parsed.astimezone(UTC)


def parse_month(text: str, *, what: str = "--month") -> tuple[datetime, datetime]:
    """A UTC calendar month ``YYYY-MM`` as its window ``[start, end)``."""
    match = _MONTH.fullmatch(str(text).strip())
    if not match or not 1 <= int(match[2]) <= 12 or not MIN_YEAR <= int(match[1]) <= MAX_YEAR:
        raise InputError(
            f"{what} {shown(text)} is not a month; write it as YYYY-MM between "
            f"{MIN_YEAR}-01 and {MAX_YEAR}-12, e.g. 2026-11."
        )
    year, month = int(match[1]), int(match[2])
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def parse_limit(text: str | int, *, what: str = "--limit", maximum: int = MAX_LIMIT) -> int:
    """A positive count of rows to show, at most ``maximum``."""
    value = str(text).strip()
    if len(value) <= MAX_INPUT_LENGTH and _INTEGER.fullmatch(value) and int(value) <= 0:
        raise InputError(f"{what} must be positive, not {int(value)}: a whole number from 1 to {maximum:,}.")
    if len(value) > MAX_INPUT_LENGTH or not _INTEGER.fullmatch(value) or int(value) > maximum:
        raise InputError(f"{what} {shown(text)} must be a whole number from 1 to {maximum:,}.")
    return int(value)


def parse_text(text: str | None, *, what: str, required: bool = True, max_length: int = MAX_TEXT_LENGTH) -> str | None:
    """Free text (a reason, an actor, a reference): one line of printable text."""
    value = (text or "").strip()
    if not value:
        if required:
            raise InputError(f"{what} is empty; say it in words.")
        return None
    bad = next((c for c in value if not c.isprintable() or c in _BIDI_CONTROLS), None)
    if bad is not None:
        raise InputError(
            f"{what} {shown(text)} contains the control character U+{ord(bad):04X}; write one line "
            "of plain text (no newlines, tabs or terminal escape codes)."
        )
    if len(value) > max_length:
        raise InputError(f"{what} is {len(value)} characters long; at most {max_length}.")
    return value
