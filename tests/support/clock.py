"""A clock the test sets: ``frozen_clock`` stops the product's wall clock (``core.clock.system_now``)
at a time the test names, for as long as the test runs.

The ledger stamps entries with that clock, and a top-up counts in the month it was posted, so a
scenario that posts money must say when: a test that read the real date would pass in one month
and fail in the next. The fixture patches the module's private ``_frozen_at``; the product has no
way to set it (no command, environment variable or flag).
"""

from __future__ import annotations

from datetime import datetime

import pytest

from billing_pipeline.core import clock


class FrozenClock:
    """The product's clock for one test; ``set`` moves it (only the test moves it)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._monkeypatch = monkeypatch

    def set(self, when: datetime | str) -> datetime:
        """Stop the clock at ``when`` (ISO text or a datetime; naive is UTC); returns it as aware UTC."""
        at = clock.clock_input(when, "frozen_clock")
        self._monkeypatch.setattr(clock, "_frozen_at", at)
        return at

    def now(self) -> datetime:
        return clock.system_now()


@pytest.fixture
def frozen_clock(monkeypatch) -> FrozenClock:
    """The product's wall clock under the test's control; call ``frozen_clock.set(...)`` before
    anything that posts or reads "now". Undone when the test ends."""
    return FrozenClock(monkeypatch)
