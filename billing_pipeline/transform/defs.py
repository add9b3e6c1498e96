"""Dagster definitions of the transform domain: the dbt models and their tests (asset checks).

``dbt_hourly_job`` builds one hour partition (or, as a single-run backfill, a range of hours)
of every dbt model; it is the hourly cycle's dbt stage, between ingestion and deduction.
``dbt_after_ingestion_sensor`` (on by default) starts it for every hour whose metrics or rental
slices are (re)materialised, so priced usage follows ingestion, and deduction follows it.
"""

import dagster as dg

from billing_pipeline.ingestion.assets import MACHINE_RENTAL_HOURS, METRIC_HOURS
from billing_pipeline.orchestration.sensors import build_materialization_sensor
from billing_pipeline.partitions import hourly_partitions
from billing_pipeline.transform.assets import billing_dbt_models

dbt_hourly_job = dg.define_asset_job(
    "dbt_hourly_job",
    selection=dg.AssetSelection.assets(billing_dbt_models),
    partitions_def=hourly_partitions,
    description="dbt build for the hour: priced usage, reconciliation, balances, invoice lines (and dbt tests).",
)

dbt_after_ingestion_sensor = build_materialization_sensor(
    name="dbt_after_ingestion_sensor",
    job=dbt_hourly_job,
    # metric_hours is written last of the hour's metric tables, in the same run.
    asset_keys=lambda: [METRIC_HOURS, MACHINE_RENTAL_HOURS],
    per_partition=True,
    description="Builds the dbt models of every hour whose metrics or rental slices were (re)materialised.",
)

defs = dg.Definitions(assets=[billing_dbt_models], jobs=[dbt_hourly_job], sensors=[dbt_after_ingestion_sensor])
