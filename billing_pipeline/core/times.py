"""The one time parser and the one month parser, and a month's bounds: every layer reads a time
or a month a person (or a setting) wrote through these.

* ``parse_time(text)``: ISO 8601 (``2026-11-24T10:00Z``, ``2026-11-24 10:00:00+01:00``, a date
  alone; naive = UTC), years 1970-9998, as an aware UTC datetime. The command line's ``--now``,
  ``--start`` and ``--end``, a run's clock tag, ``BILLING_FIRST_HOUR`` and the ledger's stored
  usage hours all go through it.
* ``parse_month(text)``: ``YYYY-MM`` exactly (four digits, dash, two digits: not ``2026-1``),
  1970-01 to 9998-12, as the first day of the month. ``billing explain``, ``billing invoice``,
  ``close-month`` and the monthly partitions' keys use it.

Both raise ``InputError`` with one line naming what was given and what to write instead.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

from billing_pipeline.core.errors import InputError

_ISO_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[T ][0-9]{2}(?::[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?)?)?"
    r"(?:Z|[+-][0-9]{2}:?[0-9]{2})?",
    re.ASCII,
)
_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})", re.ASCII)
MAX_INPUT_LENGTH = 64
MIN_YEAR, MAX_YEAR = 1970, 9998


def shown(text: object, length: int = 40) -> str:
    """``text`` quoted for an error message: escapes visible, long input cut."""
    text = str(text)
    return repr(text[:length] + ("…" if len(text) > length else ""))


def parse_time(text: str, *, what: str = "time") -> datetime:
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


def parse_month(text: str, *, what: str = "month") -> date:
    """A UTC calendar month ``YYYY-MM`` as its first day."""
    match = _MONTH.fullmatch(str(text))
    if not match or not 1 <= int(match[2]) <= 12 or not MIN_YEAR <= int(match[1]) <= MAX_YEAR:
        raise InputError(
            f"{what} {shown(text)} is not a month: write it as YYYY-MM (four digits, a dash, two "
            f"digits) between {MIN_YEAR}-01 and {MAX_YEAR}-12, e.g. 2026-11."
        )
    return date(int(match[1]), int(match[2]), 1)


def month_of(moment: datetime | date) -> date:
    """The first day of the UTC month ``moment`` falls in."""
    if isinstance(moment, datetime):
        moment = (moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)).date()
    return moment.replace(day=1)


def month_bounds(month: date) -> tuple[datetime, datetime]:
    """``[start, end)`` of the month in UTC."""
    start = datetime(month.year, month.month, 1, tzinfo=UTC)
    end = datetime(month.year + (month.month == 12), month.month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def next_month(month: date) -> date:
    return month_bounds(month)[1].date()


def month_text(month: date) -> str:
    return f"{month:%Y-%m}"
