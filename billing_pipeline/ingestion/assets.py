"""Hourly-partitioned ingestion assets (keys ``["ingestion", ...]``, group ``ingestion``).

Each asset takes one hour or a range of hours per run (``BackfillPolicy.single_run()``: a catch-up
of a week is one run, not 168), and writes each hour in its own transaction.

* ``prometheus_metric_hours`` (one multi-asset, one transaction per hour) materialises
  ``ingestion/metric_container_hours``, ``ingestion/metric_pod_network_hours``,
  ``ingestion/metric_volume_hours`` and ``ingestion/metric_hours`` (completeness) from a
  handful of aggregated PromQL queries. If Prometheus does not answer, the run fails with a
  message naming the URL and the hour, and nothing of that hour is written.
* ``machine_rentals`` materialises ``ingestion/machine_rental_hours`` (rentals sliced into
  the hour) and ``ingestion/quarantined_rows`` (bad platform rows, with reasons).

Asset checks (severity WARN, one result per run, naming the hours): ``hour_complete`` (scrape gaps, hour not
over), ``unattributed_share`` (usage no deployment claims), ``no_quarantined_rentals``.
"""

from datetime import datetime
from decimal import Decimal

import dagster as dg

from billing_pipeline.core.asset_keys import PROMETHEUS
from billing_pipeline.core.clock import run_clock
from billing_pipeline.core.hours import Hour
from billing_pipeline.core.ownership import BILLING_OWNERS
from billing_pipeline.core.partitions import hourly_partitions
from billing_pipeline.ingestion.metrics import fetch_in_groups, last_series, write_hour
from billing_pipeline.ingestion.platform import platform_key
from billing_pipeline.ingestion.rentals import quarantined_rentals, slice_rental_hour
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


def partition_hours(context: dg.AssetExecutionContext) -> list[datetime]:
    """The UTC hours of the run: one partition, or every hour of a ranged run."""
    window = context.partition_time_window
    return [hour.start for hour in Hour.range(Hour.of(window.start), Hour.of(window.end))]


def _spec(key: dg.AssetKey, description: str, deps=(), kinds=("postgres",)) -> dg.AssetSpec:
    return dg.AssetSpec(
        key=key,
        description=description,
        group_name=GROUP,
        deps=list(deps),
        kinds=set(kinds),
        owners=BILLING_OWNERS,
        metadata={"table": f"billing.{key.path[-1]}"},
    )


@dg.multi_asset(
    name="prometheus_metric_hours",
    specs=[
        _spec(
            METRIC_CONTAINER_HOURS,
            "Per container and hour: cpu, memory, gpu usage and requests, node, "
            "deployment and account (label, owner chain or unattributed).",
            deps=[PROMETHEUS, platform_key("deployments")],
            kinds=("prometheus", "postgres"),
        ),
        _spec(
            METRIC_POD_NETWORK_HOURS,
            "Per pod and hour: egress GiB, node, deployment and account.",
            deps=[PROMETHEUS, platform_key("deployments")],
            kinds=("prometheus", "postgres"),
        ),
        _spec(
            METRIC_VOLUME_HOURS,
            "Per PersistentVolumeClaim and hour: requested bytes and GiB-hours.",
            deps=[PROMETHEUS, platform_key("deployments")],
            kinds=("prometheus", "postgres"),
        ),
        _spec(
            METRIC_HOURS,
            "Per hour: whether its metrics were complete, and the problems found.",
            deps=[PROMETHEUS],
            kinds=("prometheus", "postgres"),
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            "hour_complete",
            asset=METRIC_HOURS,
            description="The hour's metrics have no scrape gap and the hour is over.",
        ),
        dg.AssetCheckSpec(
            "unattributed_share",
            asset=METRIC_CONTAINER_HOURS,
            description=f"At most {UNATTRIBUTED_SHARE_WARN:.0%} of the hour's cpu and memory "
            "usage is claimed by no deployment.",
        ),
    ],
    partitions_def=hourly_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def prometheus_metric_hours(
    context: dg.AssetExecutionContext, prometheus: PrometheusResource, postgres: PostgresResource
):
    clock = run_clock(context)
    hours = partition_hours(context)
    summaries = []
    # The hours are fetched a group at a time, each query one range query over the group (as many
    # hours as metrics.POINTS_PER_QUERY allows); while one group is written, the next is fetched
    # (Prometheus and PostgreSQL work at once). A failed fetch raises when its group's turn comes:
    # the hours before it are written, its own are not.
    with postgres.connect() as conn:
        for fetched in fetch_in_groups(prometheus, hours, clock, last_series(conn)):
            hour = fetched.hour
            summary = write_hour(conn, fetched)
            summaries.append((hour, summary))
            context.log.info(
                f"hour {hour:%Y-%m-%d %H:00}: {summary.containers} containers, {summary.pods} pods, "
                f"{summary.volumes} volumes; complete={summary.complete}"
            )
        incomplete_total = conn.execute("SELECT count(*) FROM billing.metric_hours WHERE NOT complete").fetchone()[0]
    incomplete = {h.isoformat(): s.problems for h, s in summaries if not s.complete}
    common = {
        "hours": len(hours),
        "first_hour": hours[0].isoformat(),
        "last_hour": hours[-1].isoformat(),
        "prometheus_url": prometheus.url,
    }
    shares = [(h, max(s.unattributed_cpu_share, s.unattributed_memory_share), s) for h, s in summaries]
    worst_hour, worst, worst_summary = max(shares, key=lambda x: x[1])
    quarantined = sum(s.quarantined_pods for _, s in summaries)
    yield dg.MaterializeResult(
        asset_key=METRIC_CONTAINER_HOURS,
        metadata={
            **common,
            "dagster/row_count": sum(s.containers for _, s in summaries),
            "rows": sum(s.containers for _, s in summaries),
            "unattributed_rows": sum(s.unattributed_containers for _, s in summaries),
            "unattributed_cpu_share_max": max(s.unattributed_cpu_share for _, s in summaries),
            "unattributed_memory_share_max": max(s.unattributed_memory_share for _, s in summaries),
            "quarantined_pods": quarantined,
        },
    )  # doubly-claimed Deployments: billed to nobody
    yield dg.MaterializeResult(
        asset_key=METRIC_POD_NETWORK_HOURS,
        metadata={
            **common,
            "dagster/row_count": sum(s.pods for _, s in summaries),
            "pods": sum(s.pods for _, s in summaries),
        },
    )
    yield dg.MaterializeResult(
        asset_key=METRIC_VOLUME_HOURS,
        metadata={
            **common,
            "dagster/row_count": sum(s.volumes for _, s in summaries),
            "rows": sum(s.volumes for _, s in summaries),
        },
    )
    yield dg.MaterializeResult(
        asset_key=METRIC_HOURS,
        metadata={
            **common,
            "dagster/row_count": len(hours),  # one completeness row per hour
            "complete_hours": len(hours) - len(incomplete),
            "incomplete": dg.MetadataValue.json(incomplete),
        },
    )
    yield dg.AssetCheckResult(
        asset_key=METRIC_HOURS,
        check_name="hour_complete",
        passed=not incomplete,
        severity=dg.AssetCheckSeverity.WARN,
        description=None
        if not incomplete
        else "; ".join(f"{h}: {'; '.join(p)}" for h, p in list(incomplete.items())[:5]),
        metadata={
            **common,
            "incomplete": dg.MetadataValue.json(incomplete),
            "incomplete_hours_total": incomplete_total,
        },
    )
    yield dg.AssetCheckResult(
        asset_key=METRIC_CONTAINER_HOURS,
        check_name="unattributed_share",
        passed=worst <= UNATTRIBUTED_SHARE_WARN and not quarantined,
        severity=dg.AssetCheckSeverity.WARN,
        description=None
        if not quarantined
        else (
            f"{quarantined} pod-hour(s) of a Deployment claimed by two accounts: billed to nobody, "
            "see billing.quarantined_rows"
        ),
        metadata={
            "worst_hour": worst_hour.isoformat(),
            "unattributed_rows": worst_summary.unattributed_containers,
            "quarantined_pods": quarantined,
            "unattributed_cpu_share": worst_summary.unattributed_cpu_share,
            "unattributed_memory_share": worst_summary.unattributed_memory_share,
        },
    )


@dg.multi_asset(
    name="machine_rentals",
    specs=[
        _spec(
            MACHINE_RENTAL_HOURS,
            "Machine rentals sliced into UTC hours (seconds prorated, ongoing rentals up to the run's clock).",
            deps=[platform_key("machine_usages"), platform_key("accounts")],
        ),
        _spec(
            QUARANTINED_ROWS,
            "Platform rows that cannot be billed as they stand, with a reason.",
            deps=[platform_key("machine_usages"), platform_key("accounts")],
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            "no_quarantined_rentals",
            asset=QUARANTINED_ROWS,
            description="No machine_usages row is waiting in quarantine.",
        ),
    ],
    partitions_def=hourly_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def machine_rentals(context: dg.AssetExecutionContext, postgres: PostgresResource):
    clock = run_clock(context)
    hours = partition_hours(context)
    with postgres.connect() as conn:
        summaries = [slice_rental_hour(conn, hour, clock) for hour in hours]
        waiting = quarantined_rentals(conn)
    yield dg.MaterializeResult(
        asset_key=MACHINE_RENTAL_HOURS,
        metadata={
            "hours": len(hours),
            "first_hour": hours[0].isoformat(),
            "last_hour": hours[-1].isoformat(),
            "clock": clock.isoformat(),
            "dagster/row_count": sum(s.rentals for s in summaries),  # one slice per rental and hour
            "rentals": max(s.rentals for s in summaries),
            "machine_hours": str(sum(Decimal(s.machine_hours) for s in summaries)),
            "ongoing": summaries[-1].ongoing,
        },
    )
    yield dg.MaterializeResult(
        asset_key=QUARANTINED_ROWS,
        metadata={
            "dagster/row_count": sum(s.quarantined_new for s in summaries),
            "unresolved": len(waiting),
            "new": sum(s.quarantined_new for s in summaries),
        },
    )
    yield dg.AssetCheckResult(
        asset_key=QUARANTINED_ROWS,
        check_name="no_quarantined_rentals",
        passed=not waiting,
        severity=dg.AssetCheckSeverity.WARN,
        description=None if not waiting else f"{len(waiting)} rental row(s) quarantined",
        metadata={"quarantined": dg.MetadataValue.json([{"id": w["id"], "reason": w["reason"]} for w in waiting[:50]])},
    )
