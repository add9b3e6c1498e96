"""Calendar months (UTC) as month-end sees them: parsing ``YYYY-MM`` and the month's bounds."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from billing_pipeline.core.errors import InputError


def parse_month(value: str | date) -> date:
    """``YYYY-MM`` (or a date) as the first day of that month; refuses anything else in words."""
    if isinstance(value, date):
        return value.replace(day=1)
    text = str(value).strip()
    try:
        parsed = datetime.strptime(text, "%Y-%m")
    except ValueError:
        raise InputError(f"month {text!r} is not YYYY-MM (for example 2026-10).") from None
    return parsed.date()


def month_bounds(month: date) -> tuple[datetime, datetime]:
    """``[start, end)`` of the month in UTC."""
    start = datetime(month.year, month.month, 1, tzinfo=UTC)
    nxt = (start + timedelta(days=32)).replace(day=1)
    return start, nxt


def next_month(month: date) -> date:
    return month_bounds(month)[1].date()


def month_text(month: date) -> str:
    return f"{month:%Y-%m}"
