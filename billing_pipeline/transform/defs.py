"""Dagster definitions of the transform domain: the dbt models and their tests (asset checks)."""

import dagster as dg

from billing_pipeline.transform.assets import billing_dbt_models

defs = dg.Definitions(assets=[billing_dbt_models])
