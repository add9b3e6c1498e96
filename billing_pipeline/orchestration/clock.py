"""The clock a run sees.

``billing run --now ISO`` (and ``run_billing_window(now=...)``) puts the clock in the run tag
``billing/now``; every asset that needs "now" (ongoing rentals, whether an hour is over,
lifecycle deadlines) reads it with ``run_clock(context)`` and falls back to the wall clock.
"""

from __future__ import annotations

from datetime import datetime, timezone

CLOCK_TAG = "billing/now"


def parse_clock(value: str) -> datetime:
    """An ISO timestamp as an aware UTC datetime (naive input is taken as UTC)."""
    parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def run_clock(context) -> datetime:
    """The run's clock: its ``billing/now`` tag, else the current UTC time."""
    tags = getattr(getattr(context, "run", None), "tags", None) or {}
    value = tags.get(CLOCK_TAG)
    return parse_clock(value) if value else datetime.now(timezone.utc)
