"""When a month may be closed: every billable hour of it settled, or a wait after its end.

Invoices are immutable and numbered, so closing a month early cannot be undone: usage settled
afterwards only appears as prior-period lines on the next month's invoice. A month is therefore
*ready* when every hour of it from the first billable hour (``BILLING_FIRST_HOUR``) is billed
(its metrics ingested and complete: the invoice's own "not billed yet" rule, ``invoices._UNBILLED``),
or once ``BILLING_MONTH_CLOSE_WAIT_HOURS`` (default 72) have passed since the month ended: past
that, the missing hours are a problem to chase, not a reason to hold every invoice.

Before that, ``month_close_schedule`` skips with the reason, ``billing close-month`` refuses
(exit 2) unless ``--force``, and the ``invoicing/invoices`` asset refuses a run without the
``billing/force_close`` tag. Forcing closes anyway, with the unbilled hours listed on the invoice.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import psycopg

from billing_pipeline.core.errors import ConfigurationError, InputError
from billing_pipeline.core.partitions import first_billable_hour
from billing_pipeline.invoicing.months import month_bounds, month_text

WAIT_ENV = "BILLING_MONTH_CLOSE_WAIT_HOURS"
DEFAULT_WAIT_HOURS = 72
FORCE_TAG = "billing/force_close"

_UNSETTLED = """
SELECT count(*), min(h.hour)
FROM generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '1 hour', interval '1 hour') AS h (hour)
LEFT JOIN billing.metric_hours m ON m.hour = h.hour
WHERE m.hour IS NULL OR NOT m.complete
"""


class MonthNotReadyError(InputError):
    """The month has ended but is not ready to close (exit 2): the message says when it will be."""


def close_wait_hours() -> int:
    """``BILLING_MONTH_CLOSE_WAIT_HOURS`` (default 72): a whole number of hours, 0 to 672."""
    raw = os.environ.get(WAIT_ENV, "").strip()
    if not raw:
        return DEFAULT_WAIT_HOURS
    if not raw.isascii() or not raw.isdigit() or int(raw) > 28 * 24:
        raise ConfigurationError(
            f"{WAIT_ENV}={raw[:20]!r} is not a number of hours from 0 to {28 * 24}: set it to how long after a "
            f"month's end an incomplete month is closed anyway (default {DEFAULT_WAIT_HOURS})."
        )
    return int(raw)


@dataclass(frozen=True)
class MonthReadiness:
    month: date
    now: datetime
    unsettled_hours: int
    first_unsettled: datetime | None
    wait_until: datetime

    @property
    def ready(self) -> bool:
        return self.unsettled_hours == 0 or self.now >= self.wait_until

    @property
    def reason(self) -> str:
        if self.unsettled_hours == 0:
            return f"every billable hour of {month_text(self.month)} is settled"
        why = (
            f"{self.unsettled_hours} hour(s) of {month_text(self.month)} are not settled yet (the first: "
            f"{self.first_unsettled:%Y-%m-%dT%H:%MZ}, metrics missing or incomplete)"
        )
        if self.ready:
            return f"{why}, but the wait ended at {self.wait_until.isoformat()} ({WAIT_ENV}): closing anyway"
        return (
            f"{why}: the month closes once they are, or at {self.wait_until.isoformat()} "
            f"({WAIT_ENV}={int((self.wait_until - month_bounds(self.month)[1]).total_seconds() // 3600)} h after its "
            "end); an operator can close it now with `billing close-month "
            f"{month_text(self.month)} --force` (or the run tag {FORCE_TAG}=true)"
        )

    def as_dict(self) -> dict:
        return {
            "month": month_text(self.month),
            "ready": self.ready,
            "unsettled_hours": self.unsettled_hours,
            "first_unsettled": self.first_unsettled.isoformat() if self.first_unsettled else None,
            "wait_until": self.wait_until.isoformat(),
            "reason": self.reason,
        }


def month_readiness(
    conn: psycopg.Connection, month: date, now: datetime, wait_hours: int | None = None
) -> MonthReadiness:
    """Whether ``month`` may be closed at ``now`` (see the module)."""
    start, end = month_bounds(month)
    start = max(start, first_billable_hour())
    wait = close_wait_hours() if wait_hours is None else wait_hours
    count, first = (0, None) if start >= end else conn.execute(_UNSETTLED, {"start": start, "end": end}).fetchone()
    return MonthReadiness(month, now, int(count), first, end + timedelta(hours=wait))


def forced(tags) -> bool:
    """The run carries ``billing/force_close=true`` (``billing close-month --force``)."""
    return str((tags or {}).get(FORCE_TAG, "")).lower() == "true"
