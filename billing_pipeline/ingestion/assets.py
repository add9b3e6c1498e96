"""Hourly-partitioned ingestion assets (keys ``["ingestion", ...]``, group ``ingestion``).

* ``prometheus_metric_hours`` (one multi-asset, one transaction per hour) materialises
  ``ingestion/metric_container_hours``, ``ingestion/metric_pod_network_hours``,
  ``ingestion/metric_volume_hours`` and ``ingestion/metric_hours`` (completeness) from a
  handful of aggregated PromQL queries. If Prometheus does not answer, the run fails with a
  message naming the URL and the hour, and nothing of that hour is written.
* ``machine_rentals`` materialises ``ingestion/machine_rental_hours`` (rentals sliced into
  the hour) and ``ingestion/quarantined_rows`` (bad platform rows, with reasons).

Asset checks (severity WARN, one result per hour): ``hour_complete`` (scrape gaps, hour not
over), ``unattributed_share`` (usage no deployment claims), ``no_quarantined_rentals``.
"""


from datetime import datetime, timezone

import dagster as dg

from billing_pipeline.ingestion.metrics import fetch_hour, write_hour
from billing_pipeline.ingestion.platform import platform_key
from billing_pipeline.ingestion.rentals import quarantined_rentals, slice_rental_hour
from billing_pipeline.orchestration.clock import run_clock
from billing_pipeline.partitions import hourly_partitions
from billing_pipeline.resources.postgres import PostgresResource
from billing_pipeline.resources.prometheus import PrometheusResource

GROUP = "ingestion"
UNATTRIBUTED_SHARE_WARN = 0.05  # more than 5% of an hour's cpu or memory unclaimed: look at it


def ingestion_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["ingestion", name])


METRIC_CONTAINER_HOURS = ingestion_key("metric_container_hours")
METRIC_POD_NETWORK_HOURS = ingestion_key("metric_pod_network_hours")
METRIC_VOLUME_HOURS = ingestion_key("metric_volume_hours")
METRIC_HOURS = ingestion_key("metric_hours")
MACHINE_RENTAL_HOURS = ingestion_key("machine_rental_hours")
QUARANTINED_ROWS = ingestion_key("quarantined_rows")


def partition_hour(context: dg.AssetExecutionContext) -> datetime:
    start = context.partition_time_window.start
    return datetime.fromtimestamp(start.timestamp(), tz=timezone.utc)


def _spec(key: dg.AssetKey, description: str, deps=(), kinds=("postgres",)) -> dg.AssetSpec:
    return dg.AssetSpec(key=key, description=description, group_name=GROUP, deps=list(deps),
                        kinds=set(kinds), metadata={"table": f"billing.{key.path[-1]}"})


@dg.multi_asset(
    name="prometheus_metric_hours",
    specs=[
        _spec(METRIC_CONTAINER_HOURS, "Per container and hour: cpu, memory, gpu usage and requests, node, "
              "deployment and account (label, owner chain or unattributed).",
              deps=[platform_key("deployments")], kinds=("prometheus", "postgres")),
        _spec(METRIC_POD_NETWORK_HOURS, "Per pod and hour: egress GiB, node, deployment and account.",
              deps=[platform_key("deployments")], kinds=("prometheus", "postgres")),
        _spec(METRIC_VOLUME_HOURS, "Per PersistentVolumeClaim and hour: requested bytes and GiB-hours.",
              deps=[platform_key("deployments")], kinds=("prometheus", "postgres")),
        _spec(METRIC_HOURS, "Per hour: whether its metrics were complete, and the problems found.",
              kinds=("prometheus", "postgres")),
    ],
    check_specs=[
        dg.AssetCheckSpec("hour_complete", asset=METRIC_HOURS,
                          description="The hour's metrics have no scrape gap and the hour is over."),
        dg.AssetCheckSpec("unattributed_share", asset=METRIC_CONTAINER_HOURS,
                          description=f"At most {UNATTRIBUTED_SHARE_WARN:.0%} of the hour's cpu and memory "
                                      "usage is claimed by no deployment."),
    ],
    partitions_def=hourly_partitions,
)
def prometheus_metric_hours(context: dg.AssetExecutionContext, prometheus: PrometheusResource,
                            postgres: PostgresResource):
    hour = partition_hour(context)
    clock = run_clock(context)
    fetched = fetch_hour(prometheus, hour, clock)  # raises before anything is written
    with postgres.connect() as conn:
        summary = write_hour(conn, fetched)
        incomplete_total = conn.execute("SELECT count(*) FROM billing.metric_hours WHERE NOT complete").fetchone()[0]
    context.log.info(
        f"hour {hour:%Y-%m-%d %H:00}: {summary.containers} containers, {summary.pods} pods, "
        f"{summary.volumes} volumes; complete={summary.complete}"
    )
    common = {"hour": hour.isoformat(), "prometheus_url": prometheus.url}
    yield dg.MaterializeResult(asset_key=METRIC_CONTAINER_HOURS, metadata={
        **common, "rows": summary.containers, "unattributed_rows": summary.unattributed_containers,
        "unattributed_cpu_share": summary.unattributed_cpu_share,
        "unattributed_memory_share": summary.unattributed_memory_share,
        "quarantined_pods": summary.quarantined_pods})  # doubly-claimed Deployments: billed to nobody
    yield dg.MaterializeResult(asset_key=METRIC_POD_NETWORK_HOURS, metadata={**common, "pods": summary.pods})
    yield dg.MaterializeResult(asset_key=METRIC_VOLUME_HOURS, metadata={**common, "rows": summary.volumes})
    yield dg.MaterializeResult(asset_key=METRIC_HOURS, metadata={
        **common, "complete": summary.complete, "problems": dg.MetadataValue.json(summary.problems)})
    yield dg.AssetCheckResult(
        asset_key=METRIC_HOURS, check_name="hour_complete", passed=summary.complete,
        severity=dg.AssetCheckSeverity.WARN,
        description=None if summary.complete else "; ".join(summary.problems),
        metadata={"hour": hour.isoformat(), "problems": dg.MetadataValue.json(summary.problems),
                  "incomplete_hours_total": incomplete_total},
    )
    worst = max(summary.unattributed_cpu_share, summary.unattributed_memory_share)
    yield dg.AssetCheckResult(
        asset_key=METRIC_CONTAINER_HOURS, check_name="unattributed_share",
        passed=worst <= UNATTRIBUTED_SHARE_WARN and not summary.quarantined_pods, severity=dg.AssetCheckSeverity.WARN,
        description=None if not summary.quarantined_pods else (
            f"{summary.quarantined_pods} pod(s) of a Deployment claimed by two accounts: billed to nobody, "
            "see billing.quarantined_rows"),
        metadata={"hour": hour.isoformat(), "unattributed_rows": summary.unattributed_containers,
                  "quarantined_pods": summary.quarantined_pods,
                  "unattributed_cpu_share": summary.unattributed_cpu_share,
                  "unattributed_memory_share": summary.unattributed_memory_share},
    )


@dg.multi_asset(
    name="machine_rentals",
    specs=[
        _spec(MACHINE_RENTAL_HOURS, "Machine rentals sliced into UTC hours (seconds prorated, ongoing rentals "
              "up to the run's clock).", deps=[platform_key("machine_usages"), platform_key("accounts")]),
        _spec(QUARANTINED_ROWS, "Platform rows that cannot be billed as they stand, with a reason.",
              deps=[platform_key("machine_usages"), platform_key("accounts")]),
    ],
    check_specs=[
        dg.AssetCheckSpec("no_quarantined_rentals", asset=QUARANTINED_ROWS,
                          description="No machine_usages row is waiting in quarantine."),
    ],
    partitions_def=hourly_partitions,
)
def machine_rentals(context: dg.AssetExecutionContext, postgres: PostgresResource):
    hour = partition_hour(context)
    clock = run_clock(context)
    with postgres.connect() as conn:
        summary = slice_rental_hour(conn, hour, clock)
        waiting = quarantined_rentals(conn)
    yield dg.MaterializeResult(asset_key=MACHINE_RENTAL_HOURS, metadata={
        "hour": hour.isoformat(), "clock": clock.isoformat(), "rentals": summary.rentals,
        "machine_hours": summary.machine_hours, "ongoing": summary.ongoing})
    yield dg.MaterializeResult(asset_key=QUARANTINED_ROWS, metadata={
        "unresolved": summary.quarantined_unresolved, "new": summary.quarantined_new})
    yield dg.AssetCheckResult(
        asset_key=QUARANTINED_ROWS, check_name="no_quarantined_rentals", passed=not waiting,
        severity=dg.AssetCheckSeverity.WARN,
        description=None if not waiting else f"{len(waiting)} rental row(s) quarantined",
        metadata={"quarantined": dg.MetadataValue.json(
            [{"id": w["id"], "reason": w["reason"]} for w in waiting[:50]])},
    )
