"""The hourly cycle as one asset graph, and what starts it.

The order of the stages is the graph's: ingestion (Prometheus, rentals) -> dbt -> the ledger's
settlement (``ledger/credit_transactions``) -> grant expiry
(``ledger/grant_expiry``) -> auto top-ups -> lifecycle -> the balances mart
-> alerts -> notification deliveries. Each asset declares what it needs; nothing else lists
the stages.

* ``hourly_billing_job``: the whole cycle for one hour or a range of hours (ranged runs: a
  catch-up is one dbt build per run, not one per hour). ``billing run`` launches it per chunk of
  hours; ``hourly_billing_schedule`` (off by default: switch it on once PROMETHEUS_URL points at
  the cluster's Prometheus) launches each hour five minutes after it ends.
* ``account_actions_job``: top-ups, lifecycle, alerts and deliveries, unpartitioned: what a
  balance change outside the cycle (a manual top-up, an adjustment) needs.
* ``corrections_sensor`` (on): an hour whose ingestion was re-materialised after its settlement
  (a re-run from the UI, say) is re-priced and settled: the cycle minus metric ingestion.
* ``rental_corrections_sensor`` (off by default, like the schedule): corrections to
  ``machine_usages`` re-slice, re-price and settle the hours they touch.
* ``balance_change_sensor`` (on): ``account_actions_job`` after a balance changed outside a run
  of the cycle.

Every sensor starts from the present on a new instance: its first evaluation records where
things stand and launches nothing, so the first ``dagster dev`` after the demo replays nothing.
"""

from __future__ import annotations

import json
from datetime import datetime

import dagster as dg

from billing_pipeline.core.asset_keys import ACCOUNT_LIFECYCLE, LEDGER
from billing_pipeline.core.clock import system_now
from billing_pipeline.core.hours import Hour
from billing_pipeline.core.partitions import first_billable_hour
from billing_pipeline.core.runs import JOB_TAGS, LANE_TAG, MONEY_LANE
from billing_pipeline.ingestion.assets import MACHINE_RENTAL_HOURS, METRIC_HOURS, machine_rentals
from billing_pipeline.ingestion.rentals import stale_rental_hours
from billing_pipeline.resources.postgres import PostgresResource

# The cycle's stages by the asset groups they materialise (``billing run --only STAGE``).
STAGE_GROUPS = {
    "ingestion": ("ingestion",),
    "dbt": ("dbt_usage", "dbt_balances"),  # before and after the settlement (transform/translator.py)
    "ledger": ("ledger",),
    "payments": ("payments",),
    "lifecycle": ("lifecycle",),
    "alerts": ("alerts",),
}
CYCLE_GROUPS = tuple(g for groups in STAGE_GROUPS.values() for g in groups)
ACTION_GROUPS = ("payments", "lifecycle", "alerts")

hourly_cycle = dg.AssetSelection.groups(*CYCLE_GROUPS)


def stage_selection(stages: list[str]) -> dg.AssetSelection:
    """The part of the cycle that materialises the given stages (names of ``STAGE_GROUPS``)."""
    return dg.AssetSelection.groups(*(g for stage in stages for g in STAGE_GROUPS[stage]))


# What a correction needs: everything downstream of the rental slices, metric ingestion excluded
# (Prometheus may no longer hold an old hour; its stored figures stay).
settlement_after_ingestion = hourly_cycle - dg.AssetSelection.groups(*STAGE_GROUPS["ingestion"])
settlement_after_rentals = settlement_after_ingestion | dg.AssetSelection.assets(machine_rentals)

hourly_billing_job = dg.define_asset_job(
    "hourly_billing_job",
    selection=hourly_cycle,
    tags=JOB_TAGS,
    description="The hourly cycle: ingestion, dbt, settlement into the ledger, auto top-ups, lifecycle, alerts and "
    "deliveries, for one hour or a range of hours.",
)

account_actions_job = dg.define_asset_job(
    "account_actions_job",
    selection=dg.AssetSelection.groups(*ACTION_GROUPS),
    tags=JOB_TAGS,
    description="After a balance change outside the cycle: auto top-ups, lifecycle, alerts and deliveries.",
)

hourly_billing_schedule = dg.build_schedule_from_partitioned_job(
    hourly_billing_job,
    name="hourly_billing_job_schedule",
    minute_of_hour=5,
    # Off by default: it reads Prometheus (PROMETHEUS_URL) every hour. Turn it on where the cycle
    # runs, together with month_close_schedule (which closes only months this cycle settled).
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Every hour at :05, runs hourly_billing_job for the hour just ended. Off by default; turn it "
    "on with month_close_schedule where PROMETHEUS_URL and the integrations are configured.",
)


def lane_busy(instance: dg.DagsterInstance) -> bool:
    """A run of the money lane is queued or executing: its results are not in yet."""
    return bool(
        instance.get_run_ids(
            dg.RunsFilter(
                tags={LANE_TAG: MONEY_LANE},
                statuses=[
                    dg.DagsterRunStatus.QUEUED,
                    dg.DagsterRunStatus.NOT_STARTED,
                    dg.DagsterRunStatus.STARTING,
                    dg.DagsterRunStatus.STARTED,
                ],
            ),
            limit=1,
        )
    )


def _latest_storage_id(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str | None = None) -> int:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition else None), limit=1
    ).records
    return records[0].storage_id if records else 0


@dg.sensor(
    job=hourly_billing_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Re-prices and settles an hour whose ingestion was re-materialised after its settlement.",
)
def corrections_sensor(context: dg.SensorEvaluationContext):
    watched = (METRIC_HOURS, MACHINE_RENTAL_HOURS)
    if context.cursor is None:  # a new instance: start from the present
        context.update_cursor(
            json.dumps({k.to_user_string(): _latest_storage_id(context.instance, k) for k in watched})
        )
        return dg.SkipReason("first evaluation: watching ingestion from now on")
    if lane_busy(context.instance):
        return dg.SkipReason("a run of the cycle is in progress; its settlement is not in yet")
    cursor = json.loads(context.cursor)
    newest: dict[str, int] = {}
    for key in watched:
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, after_storage_id=cursor.get(key.to_user_string(), 0)),
            limit=1000,
            ascending=True,
        ).records
        for record in records:
            if record.partition_key:
                newest[record.partition_key] = max(newest.get(record.partition_key, 0), record.storage_id)
        if records:
            cursor[key.to_user_string()] = records[-1].storage_id
    requests = [
        dg.RunRequest(
            run_key=f"correction:{partition}:{storage_id}",
            partition_key=partition,
            asset_selection=list(settlement_after_ingestion.resolve(context.repository_def.asset_graph)),
            tags={"billing/trigger": f"ingestion re-materialised (event {storage_id})"},
        )
        for partition, storage_id in sorted(newest.items())
        if _latest_storage_id(context.instance, LEDGER, partition) < storage_id
    ]
    context.update_cursor(json.dumps(cursor))
    return requests or dg.SkipReason("every re-ingested hour is already settled")


def stale_rental_partitions(conn, clock: datetime) -> list[str]:
    """Partition keys of the hours whose rental slices no longer match ``machine_usages``."""
    first = first_billable_hour()
    return [Hour.of(h).key for h in stale_rental_hours(conn, clock) if h >= first]


@dg.sensor(
    job=hourly_billing_job,
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Re-slices, re-prices and settles the hours that corrections to machine_usages touched.",
)
def rental_corrections_sensor(context: dg.SensorEvaluationContext, postgres: PostgresResource):
    if lane_busy(context.instance):
        return dg.SkipReason("a run of the cycle is in progress")
    with postgres.connect() as conn:
        stale = stale_rental_partitions(conn, system_now())
        stamp = conn.execute("SELECT max(updated_at) FROM billing.machine_usages").fetchone()[0]
    if not stale:
        return dg.SkipReason("no rental hour is stale")
    selection = list(settlement_after_rentals.resolve(context.repository_def.asset_graph))
    # The run key names the hour and the newest correction, so a later correction runs again.
    return [
        dg.RunRequest(
            run_key=f"rental-correction:{key}:{stamp.isoformat() if stamp else ''}",
            partition_key=key,
            asset_selection=selection,
        )
        for key in stale
    ]


@dg.sensor(
    job=account_actions_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Top-ups, lifecycle and alerts after a balance changed outside the hourly cycle.",
)
def balance_change_sensor(context: dg.SensorEvaluationContext, postgres: PostgresResource):
    with postgres.connect() as conn:
        newest = conn.execute("SELECT max(updated_at) FROM billing.credits").fetchone()[0]
    if newest is None:
        return dg.SkipReason("no balance yet")
    if context.cursor is None:  # a new instance: start from the present
        context.update_cursor(newest.isoformat())
        return dg.SkipReason(f"first evaluation: watching balance changes after {newest.isoformat()}")
    if newest.isoformat() == context.cursor:
        return dg.SkipReason(f"no balance change since {context.cursor}")
    if lane_busy(context.instance):
        return dg.SkipReason("a run of the cycle is in progress; it acts on the balances itself")
    context.update_cursor(newest.isoformat())
    acted = context.instance.get_latest_materialization_event(ACCOUNT_LIFECYCLE)
    if acted is not None and acted.timestamp >= newest.timestamp():
        return dg.SkipReason(f"the lifecycle already ran after the balance change of {newest.isoformat()}")
    return dg.RunRequest(run_key=f"balances@{newest.isoformat()}")


defs = dg.Definitions(
    jobs=[hourly_billing_job, account_actions_job],
    schedules=[hourly_billing_schedule],
    sensors=[corrections_sensor, rental_corrections_sensor, balance_change_sensor],
)
