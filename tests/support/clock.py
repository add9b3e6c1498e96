"""The system clock under a test's control.

``billing_pipeline.core.clock.system_now()`` is what the product stamps on what it records (a
ledger entry's ``created_at``). A test that needs its entries inside a given month sets the clock
here instead of depending on today's date; production has no such door.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from billing_pipeline.core import clock


@contextmanager
def system_clock_at(at: datetime) -> Iterator[None]:
    """Within the block, ``system_now()`` is ``at`` (aware, UTC): every entry posted is stamped so."""
    if at.tzinfo is None:
        raise ValueError("system_clock_at needs an aware datetime")
    previous = clock._system_clock
    clock._system_clock = lambda: at.astimezone(UTC)
    try:
        yield
    finally:
        clock._system_clock = previous
