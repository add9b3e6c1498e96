"""The UTC hour: the unit usage is measured, priced, settled and partitioned in.

``Hour`` is the one type for it, and the only place its text is written or read:

* ``hour.text`` (also ``str(hour)``), ``2026-11-24T10:00:00+00:00``: the hour in ISO 8601 with
  seconds and a ``+00:00`` offset. It is what the dbt vars ``min_hour``/``max_hour`` carry and
  what a ledger entry stores in ``reference.hour`` and inside its idempotency key
  (``usage:<account>:<hour>:<kind>``). That key is what makes a repeated settlement post nothing,
  so this form can never change: an entry written in another form would not be found as "already
  settled" and the hour would be charged twice. The settlement builds the same text in SQL,
  set-based, with ``HOUR_TEXT_SQL``; ``tests/unit/test_hour.py`` holds the two to the letter. The
  database reads it too: ``billing.ledger_entry_period`` (migration 0007) takes the month from
  this exact spelling without parsing, and the dbt staging model of the ledger casts it.
* ``hour.key``, ``2026-11-24-10:00``: the Dagster partition key. Dagster stores it (run tags,
  materialisations, the correction sensors' cursors), so it keeps the hourly format Dagster gave
  it; ``Hour.parse`` reads both forms.

An ``Hour`` is always on an hour boundary and in UTC; anything else is refused with an
``InputError`` naming the value. UTC has no daylight saving, so every hour is 3,600 seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from billing_pipeline.core.errors import InputError
from billing_pipeline.core.times import parse_time

HOUR = timedelta(hours=1)
# Dagster's hourly partition key (HourlyPartitionsDefinition's default format).
PARTITION_FORMAT = "%Y-%m-%d-%H:%M"
# PostgreSQL's spelling of ``Hour.text`` for a timestamptz column ``{col}``, whatever the
# session's time zone: how the settlement matches ledger references set-based.
HOUR_TEXT_SQL = """to_char({col} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"+00:00"')"""


@dataclass(frozen=True, order=True)
class Hour:
    """The UTC hour ``[start, start + 1 h)``."""

    start: datetime

    def __post_init__(self) -> None:
        value = self.start
        if not isinstance(value, datetime):
            raise InputError(f"an hour must be a datetime, not {value!r}")
        if value.tzinfo is None or value.utcoffset() != timedelta(0):
            raise InputError(f"{value.isoformat()} is not a UTC time: use Hour.of() to convert it")
        if value.minute or value.second or value.microsecond:
            raise InputError(
                f"{value.isoformat()} is not on an hour boundary "
                f"(e.g. {value.replace(minute=0, second=0, microsecond=0).isoformat()})"
            )
        # One representation per hour, so equal hours hash and compare alike.
        if value.tzinfo is not UTC:
            object.__setattr__(self, "start", value.replace(tzinfo=UTC))

    @classmethod
    def of(cls, value: datetime) -> Hour:
        """The hour starting at ``value``: any time zone (naive is taken as UTC), on an hour boundary."""
        return cls(_utc(value))

    @classmethod
    def containing(cls, value: datetime) -> Hour:
        """The hour ``value`` falls in (naive is taken as UTC)."""
        return cls(_utc(value).replace(minute=0, second=0, microsecond=0))

    @classmethod
    def parse(cls, text: str) -> Hour:
        """An hour from its text: a partition key (``2026-11-24-10:00``) or ISO 8601
        (``2026-11-24T10:00:00+00:00``, ``2026-11-24T10:00Z``; without an offset, UTC)."""
        if not isinstance(text, str):
            raise InputError(f"an hour must be text, not {text!r}")
        raw = text.strip()
        try:
            value = datetime.strptime(raw, PARTITION_FORMAT).replace(tzinfo=UTC)
        except ValueError:
            try:
                value = parse_time(raw, what="hour")
            except InputError:
                raise InputError(
                    f"{text!r} is not an hour: write 2026-11-24T10:00:00+00:00 (or the partition key 2026-11-24-10:00)"
                ) from None
        try:
            return cls.of(value)
        except InputError as exc:
            raise InputError(f"{text!r}: {exc}") from None

    @staticmethod
    def range(start: Hour, end: Hour) -> list[Hour]:
        """The hours of ``[start, end)``, in order (empty when ``end <= start``)."""
        return [start + n for n in range(end - start)]

    @property
    def end(self) -> datetime:
        return self.start + HOUR

    @property
    def key(self) -> str:
        """The Dagster partition key."""
        return self.start.strftime(PARTITION_FORMAT)

    @property
    def text(self) -> str:
        """The hour as dbt vars and ledger references spell it (see the module doc)."""
        return self.start.isoformat()

    def __str__(self) -> str:
        return self.text

    def __add__(self, hours: int) -> Hour:
        if not isinstance(hours, int):
            return NotImplemented
        return Hour(self.start + hours * HOUR)

    def __sub__(self, other):
        """``hour - n`` is the hour n hours earlier; ``hour - other`` the whole hours between them."""
        if isinstance(other, Hour):
            return int((self.start - other.start) // HOUR)
        if isinstance(other, int):
            return Hour(self.start - other * HOUR)
        return NotImplemented


def _utc(value: datetime) -> datetime:
    if not isinstance(value, datetime):
        raise InputError(f"an hour must be a datetime, not {value!r}")
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
