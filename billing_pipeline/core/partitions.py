"""The one partitioning of the pipeline: UTC hours, as usage is measured and priced.

The first billable hour comes from ``BILLING_FIRST_HOUR`` (ISO 8601, on an hour), so a new
install shows partitions from its go-live hour rather than thousands of missing hours before
it. Every process that loads the Definitions (web server, daemon, run workers, ``billing``)
must see the same value: set it once in the deployment's environment.
"""

import os
from datetime import date, datetime

import dagster as dg

from billing_pipeline.core.errors import ConfigurationError, InputError
from billing_pipeline.core.hours import PARTITION_FORMAT, Hour
from billing_pipeline.core.times import month_of, parse_time

FIRST_HOUR_VARIABLE = "BILLING_FIRST_HOUR"
DEFAULT_FIRST_HOUR = "2026-11-01T00:00:00+00:00"


def first_billable_hour() -> datetime:
    """``BILLING_FIRST_HOUR`` as an aware UTC datetime; a value that is not an hour is refused."""
    raw = os.environ.get(FIRST_HOUR_VARIABLE) or DEFAULT_FIRST_HOUR
    try:
        value = parse_time(raw, what=FIRST_HOUR_VARIABLE)
    except InputError as exc:
        raise ConfigurationError(f"{exc} Set it to the first billable hour, e.g. 2026-11-01T00:00Z.") from None
    if value.minute or value.second or value.microsecond:
        raise ConfigurationError(
            f"{FIRST_HOUR_VARIABLE}={raw!r} is not on an hour boundary (e.g. {value:%Y-%m-%dT%H}:00Z)"
        )
    return value


# Keys in Hour.key's format (Dagster's default for hourly partitions, said here so the two cannot drift).
hourly_partitions = dg.HourlyPartitionsDefinition(
    start_date=Hour(first_billable_hour()).key, timezone="UTC", fmt=PARTITION_FORMAT
)


def first_billable_month() -> date:
    """The month of ``BILLING_FIRST_HOUR``: where the monthly (month-end) partitions start."""
    return month_of(first_billable_hour())


# The months start with the first billable hour's month, as the hours do. end_offset=1: the
# running month is a partition too, so a month can be closed by a clock (``billing close-month
# --now``) ahead of the wall clock; the schedule and the command refuse a month that has not
# ended at their clock.
monthly_partitions = dg.MonthlyPartitionsDefinition(
    start_date=f"{first_billable_month():%Y-%m-%d}", timezone="UTC", end_offset=1
)


def latest_hour_of(key: dg.AssetKey) -> dg.AssetDep:
    """The dependency of an unpartitioned asset (the lifecycle, top-ups, alerts, grant expiry) on
    an hourly one, drawn to the upstream's latest hour.

    Dagster's default for this edge is every hour (``AllPartitionMapping``). To record the data
    versions of its inputs, each step of the downstream asset then lists every hourly partition
    since the first billable hour, one cron step at a time: 8,760 more a year, paid by every run
    and growing with the install's age (1.9 s of a small run after a year and a half, measured
    in the third session). Past 100 partitions Dagster compares only the upstream's newest
    materialization anyway. The edge, the
    lineage and the run order are the same; only the data version recorded for the input is the
    latest hour's (docs/orchestration.md).
    """
    return dg.AssetDep(key, partition_mapping=dg.LastPartitionMapping())
