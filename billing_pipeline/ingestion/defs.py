"""Dagster definitions of the ingestion domain (assets, jobs, sensors, schedules).

Jobs: ``ingestion_hourly_job`` (every ingestion asset, one hour partition per run) and
``machine_rental_hours_job`` (rentals only: the sensor's re-slicing). Schedule:
``ingestion_hourly_job_schedule`` (stopped by default). Sensor:
``machine_rental_corrections_sensor`` (stopped by default). The platform tables are external
assets (``platform.py``).
"""

import dagster as dg

from billing_pipeline.ingestion.assets import GROUP, machine_rentals, prometheus_metric_hours
from billing_pipeline.ingestion.platform import platform_specs
from billing_pipeline.ingestion.probes import probe_availability_hours
from billing_pipeline.ingestion.sensors import build_machine_rental_corrections_sensor

ingestion_hourly_job = dg.define_asset_job(
    "ingestion_hourly_job",
    selection=dg.AssetSelection.groups(GROUP),
    description="One hour of ingestion: Prometheus metrics and machine rentals.",
)

machine_rental_hours_job = dg.define_asset_job(
    "machine_rental_hours_job",
    selection=dg.AssetSelection.assets(machine_rentals),
    description="Re-slices one hour of machine rentals (after a correction).",
)

# Each hour's partition, five minutes after the hour ends (stopped by default: `billing run`
# and the lead's cycle schedule drive the whole cycle; this runs ingestion alone).
ingestion_hourly_schedule = dg.build_schedule_from_partitioned_job(
    ingestion_hourly_job, minute_of_hour=5, default_status=dg.DefaultScheduleStatus.STOPPED,
)

defs = dg.Definitions(
    assets=[*platform_specs, prometheus_metric_hours, machine_rentals, probe_availability_hours],
    jobs=[ingestion_hourly_job, machine_rental_hours_job],
    schedules=[ingestion_hourly_schedule],
    sensors=[build_machine_rental_corrections_sensor(machine_rental_hours_job)],
)
