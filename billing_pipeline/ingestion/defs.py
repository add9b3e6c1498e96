"""Dagster definitions of the ingestion domain: its assets and the platform's tables.

The ingestion assets run inside the hourly cycle (``orchestration.graph.hourly_billing_job``),
never alone: an hour ingested is an hour priced and settled in the same run. Prometheus and the
platform tables are observable external assets (``sources.py``), the sources of the lineage.
"""

import dagster as dg

from billing_pipeline.ingestion.assets import machine_rentals, prometheus_metric_hours
from billing_pipeline.ingestion.probes import probe_availability_hours
from billing_pipeline.ingestion.sources import (
    observe_sources_job,
    platform_tables,
    prometheus_source,
    source_observation_schedule,
)

defs = dg.Definitions(
    assets=[prometheus_source, platform_tables, prometheus_metric_hours, machine_rentals, probe_availability_hours],
    jobs=[observe_sources_job],
    schedules=[source_observation_schedule],
)
