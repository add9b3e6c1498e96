"""The clock a run sees, and the one wall-clock read of the product.

``billing run --now ISO`` (and ``run_billing_window(now=...)``) puts the clock in the run tag
``billing/now``; every asset that needs "now" (ongoing rentals, whether an hour is over,
lifecycle deadlines) reads it with ``run_clock(context)`` and falls back to the wall clock.

The wall clock itself is read in one place, ``system_now()``: the time the ledger stamps on an
entry (``created_at``, which decides the month a top-up counts in), and the default "now" of every
command run without ``--now``. Tests set it with the ``frozen_clock`` fixture
(``tests/support/clock.py``), so that no test depends on today's date.
"""

from __future__ import annotations

from datetime import UTC, datetime

from billing_pipeline.core.times import parse_time

CLOCK_TAG = "billing/now"

# Set only by tests (tests/support/clock.py patches it for one test). Deliberately no setter, no
# environment variable and no command-line flag: production always reads the real clock, so no
# command can stamp a ledger entry with another time (backdate money).
_frozen_at: datetime | None = None


def system_now() -> datetime:
    """The current time, aware UTC: the wall clock, or the time a test froze it at.

    Production code calls this instead of ``datetime.now(UTC)`` (tests/unit/test_clock.py checks
    that nothing else reads the wall clock), so a test can place ledger entries and "now" in the
    month its scenario needs, whatever the date it runs on."""
    return _frozen_at if _frozen_at is not None else datetime.now(UTC)


def parse_clock(value: str, what: str = "clock") -> datetime:
    """An ISO timestamp as an aware UTC datetime (naive input is taken as UTC): ``core.times.parse_time``."""
    return parse_time(value, what=what)


def run_clock(context) -> datetime:
    """The run's clock: its ``billing/now`` tag, else ``system_now()``."""
    tags = getattr(getattr(context, "run", None), "tags", None) or {}
    value = tags.get(CLOCK_TAG)
    return parse_clock(value) if value else system_now()


def clock_input(value: datetime | str, what: str) -> datetime:
    """A time a person gave (``--now``, ``--start``), text or datetime, as an aware UTC datetime.

    Text that is not ISO 8601 is refused with an ``InputError`` naming ``what`` and the value.
    """
    if isinstance(value, str):
        return parse_time(value, what=what)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
