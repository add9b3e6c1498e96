"""The dbt models as Dagster assets, one hourly partition at a time.

The partition window goes to dbt as ``--vars {"min_hour", "max_hour"}``; incremental models
rebuild exactly those hours. dbt tests surface as asset checks. dbt reaches the same database as
the ``postgres`` resource (BILLING_DATABASE_URL), through DBT_PG_* set for the subprocess only.
"""


import json

import dagster as dg
from dagster_dbt import DbtCliResource, dbt_assets

from billing_pipeline.partitions import hourly_partitions
from billing_pipeline.resources import PostgresResource
from billing_pipeline.transform.project import DBT_THREADS, dbt_environment, dbt_project, ensure_manifest, manifest_for_database
from billing_pipeline.transform.translator import BillingDbtTranslator


def window_vars(start, end) -> dict[str, str]:
    """dbt vars for the hours [start, end) (UTC ISO 8601)."""
    return {"min_hour": start.isoformat(), "max_hour": end.isoformat()}


@dbt_assets(
    manifest=manifest_for_database(ensure_manifest()),
    project=dbt_project,
    dagster_dbt_translator=BillingDbtTranslator(),
    partitions_def=hourly_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    name="billing_dbt_models",
)
def billing_dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, postgres: PostgresResource):
    """Price, reconcile and roll up the usage of the partition's hours (``dbt build``)."""
    window = context.partition_time_window
    # dbt unit tests check SQL logic, not data: they run in CI (tests/test_dbt_unit_tests.py),
    # not every hour.
    args = [
        "build",
        "--threads", str(DBT_THREADS),
        "--exclude-resource-type", "unit_test",
        "--vars", json.dumps(window_vars(window.start, window.end)),
    ]
    with dbt_environment(postgres.database_url):
        yield from dbt.cli(args, context=context).stream().fetch_row_counts()
