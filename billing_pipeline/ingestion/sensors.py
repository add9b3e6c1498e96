"""Re-slicing rental hours after corrections to ``machine_usages``.

``machine_rental_corrections_sensor`` looks for stale rental hours (``rentals.stale_rental_hours``:
slices older than their rental's ``updated_at``, hours a corrected rental now touches,
provisional slices of hours that have since ended) and requests one ``machine_rental_hours_job``
run per stale hour partition. The run key includes the hour's last slicing time, so a pending
request is never launched twice, and a later correction of the same hour is.
"""


from datetime import datetime, timezone

import dagster as dg

from billing_pipeline.ingestion.rentals import stale_rental_hours
from billing_pipeline.partitions import hourly_partitions
from billing_pipeline.resources.postgres import PostgresResource

PARTITION_FORMAT = "%Y-%m-%d-%H:%M"


def partition_key(hour: datetime) -> str:
    return hour.astimezone(timezone.utc).strftime(PARTITION_FORMAT)


def stale_rental_partitions(conn, clock: datetime) -> list[tuple[str, str]]:
    """(partition key, run key) for every stale rental hour inside the partitions."""
    first = hourly_partitions.start.timestamp()
    hours = [h for h in stale_rental_hours(conn, clock) if h.timestamp() >= first]
    if not hours:
        return []
    sliced = dict(conn.execute(
        "SELECT hour, sliced_at FROM billing.machine_rental_slicings WHERE hour = ANY(%s)", (hours,)
    ).fetchall())
    out = []
    for h in hours:
        stamp = sliced.get(h)
        out.append((partition_key(h), f"rental-reslice:{partition_key(h)}:{stamp.isoformat() if stamp else 'new'}"))
    return out


def build_machine_rental_corrections_sensor(job) -> dg.SensorDefinition:
    @dg.sensor(name="machine_rental_corrections_sensor", job=job, minimum_interval_seconds=300,
               default_status=dg.DefaultSensorStatus.STOPPED,
               description="Re-slices the rental hours that corrections to machine_usages touched.")
    def machine_rental_corrections_sensor(context: dg.SensorEvaluationContext, postgres: PostgresResource):
        with postgres.connect() as conn:
            stale = stale_rental_partitions(conn, datetime.now(timezone.utc))
        if not stale:
            return dg.SkipReason("no rental hour is stale")
        return [dg.RunRequest(run_key=run_key, partition_key=key) for key, run_key in stale]

    return machine_rental_corrections_sensor
