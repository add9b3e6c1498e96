"""The pipeline's sources, observed: how fresh the platform's tables and Prometheus are.

The sources are external assets (the platform writes its tables, Prometheus scrapes the
cluster); an observation records, without changing them, when each last changed, so the asset
pages show their freshness (``dagster/last_updated_timestamp``) beside the ingestion that read them.

* ``platform_tables``: per table, its row count and the newest of its timestamp columns
  (``machine_usages.updated_at``, ``accounts.created_at`` …; ``domains`` has none: rows only).
* ``prometheus_source``: the newest sample of the CPU counter Prometheus holds (the head block's
  newest sample time, else the newest within ``LOOKBACK_DAYS`` when its data was backfilled).

``observe_sources_job`` observes both; ``source_observation_schedule`` (off by default, like the
hourly schedule: switch it on once PROMETHEUS_URL points at the cluster's Prometheus) runs it
every 15 minutes. The UI's "Observe sources" button does the same by hand.
"""

from datetime import UTC, datetime

import dagster as dg

from billing_pipeline.core.asset_keys import PROMETHEUS
from billing_pipeline.core.clock import system_now
from billing_pipeline.core.ownership import BILLING_OWNERS
from billing_pipeline.ingestion.platform import PLATFORM_TABLES, platform_key

LAST_UPDATED = "dagster/last_updated_timestamp"
ROW_COUNT = "dagster/row_count"
# What "last changed" means per table: the newest of these (fixed SQL, no input).
FRESHNESS_SQL = {
    "accounts": "SELECT count(*), max(created_at) FROM billing.accounts",
    "deployments": "SELECT count(*), max(greatest(created_at, deleted_at)) FROM billing.deployments",
    "domains": "SELECT count(*), NULL::timestamptz FROM billing.domains",
    "machine_usages": "SELECT count(*), max(updated_at) FROM billing.machine_usages",
    "pricing_configs": "SELECT count(*), max(effective_from) FROM billing.pricing_configs",
}
FRESHNESS_METRIC = "container_cpu_usage_seconds_total"
LOOKBACK_DAYS = 31

platform_specs = [
    dg.AssetSpec(
        key=platform_key(table),
        description=description,
        group_name="platform",
        kinds={"postgres"},
        owners=BILLING_OWNERS,
        metadata={"table": f"billing.{table}", "written_by": "the Satusky platform"},
    )
    for table, description in PLATFORM_TABLES.items()
]

prometheus_spec = dg.AssetSpec(
    key=PROMETHEUS,
    group_name="sources",
    kinds={"prometheus"},
    owners=BILLING_OWNERS,
    description="Prometheus (PROMETHEUS_URL): cAdvisor and kube-state-metrics series of the cluster, read with "
    "aggregated PromQL per hour. Observed: the time of its newest sample.",
)


def table_observation(table: str, rows: int, newest: datetime | None) -> dg.ObserveResult:
    metadata: dict = {ROW_COUNT: int(rows)}
    if newest is not None:
        metadata[LAST_UPDATED] = dg.MetadataValue.timestamp(newest)
    return dg.ObserveResult(asset_key=platform_key(table), metadata=metadata)


@dg.multi_observable_source_asset(specs=platform_specs, name="platform_tables", required_resource_keys={"postgres"})
def platform_tables(context: dg.AssetExecutionContext):
    with context.resources.postgres.connect() as conn:
        for table, sql in FRESHNESS_SQL.items():
            rows, newest = conn.execute(sql).fetchone()
            yield table_observation(table, rows, newest)


def newest_sample(prometheus, now: datetime) -> datetime | None:
    """The newest sample of ``FRESHNESS_METRIC``: among the last five minutes' samples, else (a
    Prometheus without live scrapes, as the demo's backfilled one) the newest of those seen at
    hourly steps over ``LOOKBACK_DAYS`` (each step sees its last five minutes)."""
    for promql in (
        f"max(timestamp({FRESHNESS_METRIC}))",
        f"max(max_over_time(timestamp({FRESHNESS_METRIC})[{LOOKBACK_DAYS}d:1h]))",
    ):
        result = prometheus.query(promql, now, what="the freshness query")
        if result:
            return datetime.fromtimestamp(float(result[0]["value"][1]), tz=UTC)
    return None


@dg.multi_observable_source_asset(
    specs=[prometheus_spec], name="prometheus_source", required_resource_keys={"prometheus"}
)
def prometheus_source(context: dg.AssetExecutionContext):
    newest = newest_sample(context.resources.prometheus, system_now())
    metadata: dict = {"url": context.resources.prometheus.url}
    if newest is not None:
        metadata[LAST_UPDATED] = dg.MetadataValue.timestamp(newest)
    else:
        metadata["newest_sample"] = f"none of {FRESHNESS_METRIC} in the last {LOOKBACK_DAYS} days"
    yield dg.ObserveResult(asset_key=PROMETHEUS, metadata=metadata)


observe_sources_job = dg.define_asset_job(
    "observe_sources_job",
    selection=dg.AssetSelection.assets(platform_tables, prometheus_source),
    description="Observes the platform's tables and Prometheus: rows and the time each last changed.",
)

source_observation_schedule = dg.ScheduleDefinition(
    name="source_observation_schedule",
    job=observe_sources_job,
    cron_schedule="*/15 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Observes the platform's tables and Prometheus every 15 minutes (off by default, like the hourly "
    "schedule: switch it on once PROMETHEUS_URL points at the cluster's Prometheus).",
)
