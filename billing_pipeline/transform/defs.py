"""Dagster definitions of the transform domain: the dbt models and their tests (asset checks).

``dbt_hourly_job`` builds one hour partition (or, as a single-run backfill, a range of hours)
of every dbt model; it is the hourly cycle's dbt stage, between ingestion and deduction.
"""

import dagster as dg

from billing_pipeline.partitions import hourly_partitions
from billing_pipeline.transform.assets import billing_dbt_models

dbt_hourly_job = dg.define_asset_job(
    "dbt_hourly_job",
    selection=dg.AssetSelection.assets(billing_dbt_models),
    partitions_def=hourly_partitions,
    description="dbt build for the hour: priced usage, reconciliation, balances, invoice lines (and dbt tests).",
)

defs = dg.Definitions(assets=[billing_dbt_models], jobs=[dbt_hourly_job])
