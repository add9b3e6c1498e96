"""Dagster definitions of the ingestion domain: its assets and the platform's tables.

The ingestion assets run inside the hourly cycle (``orchestration.graph.hourly_billing_job``),
never alone: an hour ingested is an hour priced and settled in the same run. Prometheus and the
platform tables are external assets (``platform.py``), the sources of the lineage.
"""

import dagster as dg

from billing_pipeline.ingestion.assets import machine_rentals, prometheus_metric_hours, prometheus_source
from billing_pipeline.ingestion.platform import platform_specs
from billing_pipeline.ingestion.probes import probe_availability_hours

defs = dg.Definitions(
    assets=[prometheus_source, *platform_specs, prometheus_metric_hours, machine_rentals, probe_availability_hours]
)
