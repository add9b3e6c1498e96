"""The clock a run sees.

``billing run --now ISO`` (and ``run_billing_window(now=...)``) puts the clock in the run tag
``billing/now``; every asset that needs "now" (ongoing rentals, whether an hour is over,
lifecycle deadlines) reads it with ``run_clock(context)`` and falls back to the wall clock.
"""

from __future__ import annotations

from datetime import UTC, datetime

from billing_pipeline.core.errors import InputError

CLOCK_TAG = "billing/now"


def parse_clock(value: str) -> datetime:
    """An ISO timestamp as an aware UTC datetime (naive input is taken as UTC)."""
    parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


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
        try:
            return parse_clock(value)
        except ValueError:
            raise InputError(
                f"{what} {value!r} is not an ISO 8601 timestamp (for example 2026-11-01T06:00:00Z)"
            ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
