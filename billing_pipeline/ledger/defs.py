"""Dagster definitions of the ledger domain.

* ``ledger/credit_transactions``: the ledger table as an external asset (the dbt ledger source
  maps onto it). Jobs that post entries report a materialization of it, which is what the alert
  and top-up sensors watch.
* ``credit_usage_job`` (hourly partitions): settles one hour of ``fct_priced_usage`` into the
  ledger (``ledger.deduction``).
* ``credit_usage_sensor`` (on by default): launches ``credit_usage_job`` for the hour of every new
  ``fct_priced_usage`` materialization, with the event's storage id in the ``run_key``, so a
  re-evaluation never launches twice and a re-materialised hour is settled again (its difference).

The sensors are built by ``orchestration.sensors.build_materialization_sensor``.
"""


import dagster as dg

from billing_pipeline.ledger.deduction import settle_priced_usage
from billing_pipeline.orchestration.sensors import build_materialization_sensor
from billing_pipeline.partitions import hourly_partitions
from billing_pipeline.resources.postgres import PostgresResource

LEDGER_ASSET_KEY = dg.AssetKey(["ledger", "credit_transactions"])

credit_transactions = dg.AssetSpec(
    key=LEDGER_ASSET_KEY,
    group_name="ledger",
    description="billing.credit_transactions: the append-only credit ledger (written only by billing_pipeline.ledger).",
    kinds={"postgres"},
)


def ledger_changed(description: str, **metadata) -> dg.AssetMaterialization:
    """The event a job logs after posting ledger entries; downstream sensors react to it."""
    return dg.AssetMaterialization(asset_key=LEDGER_ASSET_KEY, description=description, metadata=metadata)


@dg.op(description="Post the usage deductions (and adjusting entries) owed for the partition's hour.")
def settle_hour(context: dg.OpExecutionContext, postgres: PostgresResource):
    window = context.partition_time_window
    with postgres.connect(autocommit=True) as conn:
        result = settle_priced_usage(conn, window.start, window.end)
    context.log.info(result.summary())
    if result.unknown_accounts:
        context.log.warning(
            f"priced usage of hour {window.start.isoformat()} names accounts missing from billing.accounts "
            f"(not deducted): {', '.join(result.unknown_accounts)}; check the quarantine and the platform's accounts."
        )
    if result.posted:
        yield ledger_changed(result.summary(), hour=window.start.isoformat(), entries=result.posted,
                             deducted=str(result.total_deducted))
    yield dg.Output(None, metadata={
        "hour": window.start.isoformat(), "deductions": result.deductions, "adjustments": result.adjustments,
        "reversals": result.reversals, "already_posted": result.already_posted,
        "net_deducted": str(result.total_deducted), "accounts": len(result.accounts),
    })


@dg.job(partitions_def=hourly_partitions, tags={"billing/domain": "ledger"},
        description="Settles one hour of priced usage into the ledger, exactly once (contract section 7).")
def credit_usage_job():
    settle_hour()


def _priced_usage_key() -> list[dg.AssetKey]:
    from dagster_dbt import get_asset_key_for_model

    from billing_pipeline.transform.assets import billing_dbt_models

    return [get_asset_key_for_model([billing_dbt_models], "fct_priced_usage")]


def balance_change_keys() -> list[dg.AssetKey]:
    """What changes balances as the alert and top-up sensors see it: the ledger and the balances mart."""
    from dagster_dbt import get_asset_key_for_model

    from billing_pipeline.transform.assets import billing_dbt_models

    return [LEDGER_ASSET_KEY, get_asset_key_for_model([billing_dbt_models], "fct_account_balances")]


credit_usage_sensor = build_materialization_sensor(
    name="credit_usage_sensor",
    job=credit_usage_job,
    asset_keys=_priced_usage_key,
    per_partition=True,
    description="Settles an hour into the ledger each time its fct_priced_usage is (re)materialised.",
)

defs = dg.Definitions(assets=[credit_transactions], jobs=[credit_usage_job], sensors=[credit_usage_sensor])
