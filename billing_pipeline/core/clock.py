"""The clock a run sees.

``billing run --now ISO`` (and ``run_billing_window(now=...)``) puts the clock in the run tag
``billing/now``; every asset that needs "now" (ongoing rentals, whether an hour is over,
lifecycle deadlines) reads it with ``run_clock(context)`` and falls back to the wall clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from billing_pipeline.core.times import parse_time

CLOCK_TAG = "billing/now"


def parse_clock(value: str, what: str = "clock") -> datetime:
    """An ISO timestamp as an aware UTC datetime (naive input is taken as UTC): ``core.times.parse_time``."""
    return parse_time(value, what=what)


def run_clock(context) -> datetime:
    """The run's clock: its ``billing/now`` tag, else the current UTC time."""
    tags = getattr(getattr(context, "run", None), "tags", None) or {}
    value = tags.get(CLOCK_TAG)
    return parse_clock(value) if value else datetime.now(UTC)


def clock_input(value: datetime | str, what: str) -> datetime:
    """A time a person gave (``--now``, ``--start``), text or datetime, as an aware UTC datetime.

    Text that is not ISO 8601 is refused with an ``InputError`` naming ``what`` and the value.
    """
    if isinstance(value, str):
        return parse_time(value, what=what)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


# The ledger's clock: the time posting stamps on new entries (created_at, inside their hash).
# The wall clock, unless a test sets another (``set_ledger_clock``) to post entries inside the
# months it generates. (Minimal stand-in until the ``dates`` branch's test clock is merged:
# the two should become one.)
_ledger_clock: Callable[[], datetime] | None = None


def ledger_now() -> datetime:
    """Now, as the ledger stamps a new entry (aware UTC)."""
    return _ledger_clock() if _ledger_clock is not None else datetime.now(UTC)


def set_ledger_clock(clock: Callable[[], datetime] | None) -> None:
    """Make posting read ``clock()`` for its entries' time (None: the wall clock again). Tests only."""
    global _ledger_clock
    _ledger_clock = clock


@contextmanager
def ledger_clock_at(moment: datetime) -> Iterator[None]:
    """Within the block, posting stamps entries with ``moment`` (tests and the demo's scripted
    history only: production posts at the time it posts)."""
    set_ledger_clock(lambda: moment)
    try:
        yield
    finally:
        set_ledger_clock(None)
