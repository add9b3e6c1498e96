"""Sensors that start a job after new materializations of the assets it depends on.

Shared by every domain: deduction after priced usage, alerts and top-ups after ledger changes,
dbt after ingestion. Run keys name the newest event they answer, so a repeated evaluation (or a
daemon restart that replays a tick) never launches twice.
"""

import json
from typing import Callable, Optional, Sequence

import dagster as dg


def build_materialization_sensor(
    *,
    name: str,
    job: dg.JobDefinition,
    asset_keys: Callable[[], Sequence[dg.AssetKey]],
    per_partition: bool,
    description: str,
    minimum_interval_seconds: int = 30,
) -> dg.SensorDefinition:
    """A sensor launching ``job`` after new materializations of ``asset_keys``.

    The cursor keeps, per asset key, the storage id of the last event seen. ``per_partition``:
    one run per new (partition) event, for that partition; otherwise one run per evaluation that
    saw anything new. Run keys name the newest event they answer, so a repeated evaluation (or a
    daemon restart that replays a tick) never launches twice.
    """

    @dg.sensor(name=name, job=job, description=description, default_status=dg.DefaultSensorStatus.RUNNING,
               minimum_interval_seconds=minimum_interval_seconds)
    def _sensor(context: dg.SensorEvaluationContext):
        cursor = json.loads(context.cursor) if context.cursor else {}
        new_events: list[tuple[dg.AssetKey, int, Optional[str]]] = []
        for key in asset_keys():
            seen = cursor.get(key.to_user_string())
            records = context.instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=key, after_storage_id=seen), limit=1000, ascending=True
            ).records
            for record in records:
                new_events.append((key, record.storage_id, record.partition_key))
            if records:
                cursor[key.to_user_string()] = records[-1].storage_id
        if not new_events:
            return dg.SkipReason(f"no new materialization of {', '.join(k.to_user_string() for k in asset_keys())}")
        context.update_cursor(json.dumps(cursor, sort_keys=True))
        if per_partition:
            latest: dict[str, int] = {}
            for _key, storage_id, partition in new_events:
                if partition is not None:
                    latest[partition] = max(storage_id, latest.get(partition, 0))
            if not latest:
                return dg.SkipReason("new materializations carry no partition (nothing to settle per hour)")
            return [dg.RunRequest(run_key=f"{name}:{partition}:{storage_id}", partition_key=partition,
                                  tags={"billing/trigger": f"materialization {storage_id}"})
                    for partition, storage_id in sorted(latest.items())]
        newest = max(storage_id for _key, storage_id, _p in new_events)
        return dg.RunRequest(run_key=f"{name}:{newest}", tags={"billing/trigger": f"materialization {newest}"})

    return _sensor
