"""Dagster definitions of the transform domain: the dbt models and their tests (asset checks).

The models run inside the hourly cycle (``orchestration.graph.hourly_billing_job``), one hour or
a range of hours per run, between ingestion and the ledger's settlement.
"""

import dagster as dg

from billing_pipeline.transform.assets import DBT_MODELS

defs = dg.Definitions(assets=DBT_MODELS)
