"""The one partitioning of the pipeline: UTC hours, as usage is measured and priced."""

import dagster as dg

HOURLY_START = "2025-01-01-00:00"

hourly_partitions = dg.HourlyPartitionsDefinition(start_date=HOURLY_START, timezone="UTC")
