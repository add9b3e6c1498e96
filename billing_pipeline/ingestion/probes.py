"""Availability probes (docs/rules/ingestion.md): ``probe_success`` per deployment and UTC hour.

A minute ``[m, m+1min)`` of a deployment is *measured* when at least one ``probe_success``
sample of that deployment lies in it, and *down* when every such sample is 0; minutes without a
sample are neither up nor down (they are counted by the SLA job and shown, never taken as down).

One range query per hour, one step per minute (evaluated at ``hour + 60k + 59.999 s`` over
``[1m]``, as ``promql.minute_steps``): ``max by (deployment_id) (max_over_time(...))`` is > 0 when
some sample of the minute was up, 0 when all were down, and absent when there was none.
Each deployment-hour is stored with its measured and down minutes and the state of each minute
(``u``/``d``/``.``), so that minutes excluded later (grace period) can be taken out exactly.

The hour is replaced in one transaction. Completeness goes to ``billing.probe_hours``: the hour
is incomplete when it was not over at the run's clock, when some minute has no probe sample at
all (the prober itself was down), or when a deployment alive in the hour has unmeasured minutes.
"""

import json
from dataclasses import dataclass, field
from datetime import datetime

import dagster as dg
import psycopg

from billing_pipeline.core.asset_keys import PROMETHEUS
from billing_pipeline.core.clock import run_clock
from billing_pipeline.core.hours import HOUR
from billing_pipeline.core.ownership import BILLING_OWNERS
from billing_pipeline.core.partitions import hourly_partitions
from billing_pipeline.ingestion import promql
from billing_pipeline.ingestion.assets import GROUP, ingestion_key, partition_hours
from billing_pipeline.ingestion.platform import platform_key
from billing_pipeline.resources.postgres import PostgresResource
from billing_pipeline.resources.prometheus import PrometheusResource, PrometheusUnavailable

PROBE_DEPLOYMENT_HOURS = ingestion_key("probe_deployment_hours")
PROBE_HOURS = ingestion_key("probe_hours")

PROBE_MINUTES = 'max by (deployment_id) (max_over_time(probe_success{deployment_id!=""}[1m]))'
"""Range query, one step per minute: > 0 some sample up, 0 every sample down, absent no sample."""


@dataclass
class ProbeHour:
    hour: datetime
    prometheus_url: str
    states: dict[str, list[str]] = field(default_factory=dict)  # deployment -> 60 of 'u' / 'd' / '.'
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ProbeSummary:
    hour: datetime
    complete: bool
    problems: list[str]
    deployments: int
    measured_minutes: int
    down_minutes: int


def fetch_probe_hour(prometheus: PrometheusResource, hour: datetime, clock: datetime) -> ProbeHour:
    """Query ``[hour, hour+1h)``; raises ``PrometheusUnavailable`` before anything is written."""
    first, last = promql.minute_steps(hour)
    label = f"for the probes of hour {hour:%Y-%m-%d %H:00} UTC"
    try:
        series = prometheus.query_range(PROBE_MINUTES, first, last, 60, what=label)
    except PrometheusUnavailable:
        raise
    out = ProbeHour(hour=hour, prometheus_url=prometheus.url)
    base = hour.timestamp()
    for s in series:
        dep = s["metric"].get("deployment_id")
        states = out.states.setdefault(dep, ["."] * 60)
        for ts, value in s.get("values", []):
            minute = int((float(ts) - base) // 60)
            if 0 <= minute < 60:
                states[minute] = "u" if float(value) > 0 else "d"
    if hour + HOUR > clock:
        out.problems.append(
            f"the hour was not over at {clock:%Y-%m-%d %H:%M:%S} UTC (the run's clock): probe samples are still arriving"
        )
    silent = [m for m in range(60) if all(st[m] == "." for st in out.states.values())]
    if not out.states:
        out.problems.append("Prometheus holds no probe_success samples for this hour")
    elif silent:
        out.problems.append(f"no probe_success sample at all in {len(silent)} minute(s) of the hour: prober gap")
    return out


_WRITE = """
CREATE TEMP TABLE stg_probe (deployment_id text, minute_states text) ON COMMIT DROP;
"""

_REPLACE = """
DELETE FROM billing.probe_deployment_hours WHERE hour = %(hour)s;
INSERT INTO billing.probe_deployment_hours (hour, deployment_id, measured_minutes, down_minutes, minute_states)
SELECT %(hour)s, deployment_id,
       60 - length(replace(replace(minute_states, 'u', ''), 'd', '')),
       length(minute_states) - length(replace(minute_states, 'd', '')),
       minute_states
FROM stg_probe
"""

# Deployments alive during the hour (existence overlaps it) with minutes not measured.
_GAPS = """
SELECT d.id, 60 - coalesce(p.measured_minutes, 0) AS unmeasured
FROM billing.deployments d
LEFT JOIN billing.probe_deployment_hours p ON p.deployment_id = d.id AND p.hour = %(hour)s
WHERE d.created_at < %(hour_end)s AND (d.deleted_at IS NULL OR d.deleted_at > %(hour)s)
  AND coalesce(p.measured_minutes, 0) < 60
ORDER BY d.id
"""

_UPSERT_HOUR = """
INSERT INTO billing.probe_hours (hour, complete, problems, prometheus_url, deployments, ingested_at)
VALUES (%(hour)s, %(complete)s, %(problems)s, %(url)s, %(deployments)s, now())
ON CONFLICT (hour) DO UPDATE SET complete = EXCLUDED.complete, problems = EXCLUDED.problems,
    prometheus_url = EXCLUDED.prometheus_url, deployments = EXCLUDED.deployments, ingested_at = EXCLUDED.ingested_at
"""


def write_probe_hour(conn: psycopg.Connection, fetched: ProbeHour) -> ProbeSummary:
    """Replace the hour's probe rows and its completeness, in one transaction."""
    params = {"hour": fetched.hour, "hour_end": fetched.hour + HOUR}
    problems = list(fetched.problems)
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(_WRITE)
        with cur.copy("COPY stg_probe FROM STDIN") as copy:
            for dep, states in fetched.states.items():
                copy.write_row((dep, "".join(states)))
        for statement in _REPLACE.split(";\n"):
            cur.execute(statement, params)
        gaps = cur.execute(_GAPS, params).fetchall()
        if gaps:
            shown = ", ".join(f"{d} ({n} min)" for d, n in gaps[:10]) + (" …" if len(gaps) > 10 else "")
            problems.append(
                f"{len(gaps)} live deployment(s) have minutes without probe samples (unmeasured, not down): {shown}"
            )
        measured, down = cur.execute(
            "SELECT coalesce(sum(measured_minutes), 0), coalesce(sum(down_minutes), 0) "
            "FROM billing.probe_deployment_hours WHERE hour = %(hour)s",
            params,
        ).fetchone()
        cur.execute(
            _UPSERT_HOUR,
            {
                **params,
                "complete": not problems,
                "problems": json.dumps(problems),
                "url": fetched.prometheus_url,
                "deployments": len(fetched.states),
            },
        )
    return ProbeSummary(fetched.hour, not problems, problems, len(fetched.states), int(measured), int(down))


@dg.multi_asset(
    name="probe_availability_hours",
    specs=[
        dg.AssetSpec(
            PROBE_DEPLOYMENT_HOURS,
            group_name=GROUP,
            kinds={"prometheus", "postgres"},
            owners=BILLING_OWNERS,
            deps=[PROMETHEUS, platform_key("deployments")],
            metadata={"table": "billing.probe_deployment_hours"},
            description="Per deployment and hour: minutes measured and down by probe_success, "
            "and each minute's state (docs/rules/ingestion.md).",
        ),
        dg.AssetSpec(
            PROBE_HOURS,
            group_name=GROUP,
            kinds={"prometheus", "postgres"},
            owners=BILLING_OWNERS,
            deps=[PROMETHEUS],
            metadata={"table": "billing.probe_hours"},
            description="Per hour: whether the probe data is complete, and the gaps found.",
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            "probe_hour_complete",
            asset=PROBE_HOURS,
            description="Every minute of the hour has probe samples for every live deployment.",
        ),
    ],
    partitions_def=hourly_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def probe_availability_hours(
    context: dg.AssetExecutionContext, prometheus: PrometheusResource, postgres: PostgresResource
):
    """Every hour of the run (one partition, or a range), each in its own transaction."""
    hours = partition_hours(context)
    clock = run_clock(context)
    fetched = [fetch_probe_hour(prometheus, hour, clock) for hour in hours]  # raises before any write
    with postgres.connect() as conn:
        summaries = [write_probe_hour(conn, f) for f in fetched]
    problems = [f"{s.hour:%Y-%m-%d %H:00}: {p}" for s in summaries for p in s.problems]
    complete = all(s.complete for s in summaries)
    measured, down = sum(s.measured_minutes for s in summaries), sum(s.down_minutes for s in summaries)
    context.log.info(
        f"probes of {len(hours)} hour(s) from {hours[0]:%Y-%m-%d %H:00}: {measured} measured / "
        f"{down} down minutes; complete={complete}"
    )
    common = {"hours": len(hours), "first_hour": hours[0].isoformat(), "prometheus_url": prometheus.url}
    yield dg.MaterializeResult(
        asset_key=PROBE_DEPLOYMENT_HOURS,
        metadata={
            **common,
            "dagster/row_count": sum(s.deployments for s in summaries),  # one row per deployment and hour
            "deployments": max(s.deployments for s in summaries),
            "measured_minutes": measured,
            "down_minutes": down,
        },
    )
    yield dg.MaterializeResult(
        asset_key=PROBE_HOURS,
        metadata={
            **common,
            "dagster/row_count": len(hours),  # one completeness row per hour
            "complete": complete,
            "problems": dg.MetadataValue.json(problems[:100]),
        },
    )
    yield dg.AssetCheckResult(
        asset_key=PROBE_HOURS,
        check_name="probe_hour_complete",
        passed=complete,
        severity=dg.AssetCheckSeverity.WARN,
        description=None if complete else "; ".join(problems[:10]),
        metadata={"problems": dg.MetadataValue.json(problems[:100])},
    )
