"""Every value a person types on the `billing` command line, parsed in one place.

Each parser takes the raw text and returns the value, or raises ``InputError`` (exit 2) with one
line that names the option, quotes what was given (escaped, so control characters cannot reach
the terminal) and says what to write instead. Nothing here touches the database.

Rules, for amounts: ASCII digits only (no other scripts' digits, no ``_``, no exponent), an
optional sign and at most six decimals, at most ``MAX_ENTRY_AMOUNT`` credits per entry. For
times and months, ``core.times`` (one parser each, shared with close-month and the partitions):
ISO 8601 (``2026-11-24T10:00``, ``...Z`` or with an offset; naive = UTC); ``YYYY-MM`` between 1970-01
and 9998-12. For free text (reason, actor, references): one line of
printable text, no control characters, at most 500 characters.

One helper asks the database, after the fact: :func:`unknown_account_hint` finds the account a
mistyped id was probably meant to be (``main`` adds it to every "unknown account" error).
"""

from __future__ import annotations

import difflib
import re
from datetime import date, datetime
from decimal import Decimal

from billing_pipeline.core import times
from billing_pipeline.core.errors import InputError
from billing_pipeline.core.times import MAX_INPUT_LENGTH, shown

_AMOUNT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)", re.ASCII)
_INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)
MAX_LIMIT = 100_000


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
    from billing_pipeline.ledger.entries import MAX_ENTRY_AMOUNT  # the ledger package loads psycopg: not for --help

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
    """An ISO 8601 instant as an aware UTC datetime (naive input is taken as UTC): ``core.times.parse_time``."""
    return times.parse_time(text, what=what)


def parse_month(text: str, *, what: str = "--month") -> date:
    """A UTC calendar month ``YYYY-MM`` as its first day: ``core.times.parse_month``."""
    return times.parse_month(text, what=what)


def parse_limit(text: str | int, *, what: str = "--limit", maximum: int = MAX_LIMIT) -> int:
    """A positive count of rows to show, at most ``maximum``."""
    value = str(text).strip()
    if len(value) <= MAX_INPUT_LENGTH and _INTEGER.fullmatch(value) and int(value) <= 0:
        raise InputError(f"{what} must be positive, not {int(value)}: a whole number from 1 to {maximum:,}.")
    if len(value) > MAX_INPUT_LENGTH or not _INTEGER.fullmatch(value) or int(value) > maximum:
        raise InputError(f"{what} {shown(text)} must be a whole number from 1 to {maximum:,}.")
    return int(value)


def parse_text(text: str | None, *, what: str, required: bool = True, max_length: int | None = None) -> str | None:
    """Free text (a reason, an actor, a reference): one line of printable text."""
    from billing_pipeline.ledger.entries import _BIDI_CONTROLS, MAX_TEXT_LENGTH

    max_length = MAX_TEXT_LENGTH if max_length is None else max_length
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


def account_suggestion(account_id: str, known: list[str]) -> str:
    """What to say after "unknown account X" (one or two sentences): the closest known id, else
    where to find them all.

    Matches ignore case, so ``ACME`` finds ``acme``."""
    lowered = {k.lower(): k for k in known}
    close = difflib.get_close_matches(str(account_id).lower(), list(lowered), n=1, cutoff=0.6)
    if close:
        return f"Did you mean {lowered[close[0]]!r}? `billing accounts` lists every account."
    if not known:
        return "There are no accounts yet (billing.accounts is empty)."
    return f"`billing accounts` lists the {len(known)} account(s)."


def unknown_account_hint(account_id: str) -> str | None:
    """:func:`account_suggestion` for ``account_id`` against billing.accounts, or None when the
    accounts cannot be read (the error that is being reported then stands alone)."""
    from billing_pipeline.db import connect
    from billing_pipeline.lifecycle.store import account_ids

    try:
        with connect() as conn:
            known = account_ids(conn)
    except Exception:
        return None
    return account_suggestion(account_id, known)
