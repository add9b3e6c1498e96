"""The clocks the product reads.

* The run's clock: ``billing run --now ISO`` (and ``run_billing_window(now=...)``) puts it in the
  run tag ``billing/now``; every asset that needs "now" (ongoing rentals, whether an hour is
  over, lifecycle deadlines) reads it with ``run_clock(context)``.
* The system clock, ``system_now()``: the time the product stamps on what it records (a ledger
  entry's ``created_at``) and the default of every "now" not given. In production it is the
  machine's UTC time and nothing can move it: no command, option or environment variable sets
  it, so no command can backdate money. Tests replace ``_system_clock`` (through
  ``tests/support/clock.py``) so that a test's months never depend on today's date.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from billing_pipeline.core.errors import InputError

CLOCK_TAG = "billing/now"


def _wall_clock() -> datetime:
    return datetime.now(UTC)


# Replaced only by tests (tests/support/clock.py); read only through system_now().
_system_clock: Callable[[], datetime] = _wall_clock


def system_now() -> datetime:
    """The current time as an aware UTC datetime: what the product records things at."""
    return _system_clock()


def parse_clock(value: str) -> datetime:
    """An ISO timestamp as an aware UTC datetime (naive input is taken as UTC)."""
    parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def run_clock(context) -> datetime:
    """The run's clock: its ``billing/now`` tag, else the system clock."""
    tags = getattr(getattr(context, "run", None), "tags", None) or {}
    value = tags.get(CLOCK_TAG)
    return parse_clock(value) if value else system_now()


def clock_input(value: datetime | str, what: str) -> datetime:
    """A time a person gave (``--now``, ``--start``), text or datetime, as an aware UTC datetime.

    Text that is not ISO 8601 is refused with an ``InputError`` naming ``what`` and the value.
    """
    if isinstance(value, str):
        try:
            return parse_clock(value)
        except ValueError:
            raise InputError(
                f"{what} {value!r} is not an ISO 8601 timestamp (for example 2026-11-01T06:00:00Z)"
            ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
