"""One hour of pod metrics: Prometheus aggregates -> attributed rows in PostgreSQL.

``fetch_hours(prometheus, hours, clock)`` runs the queries (``promql``) of consecutive hours in
parallel, each as one range query with a one-hour step (``fetch_in_groups`` cuts a long range
into as few such groups as ``POINTS_PER_QUERY`` allows), and returns per hour raw per-container, per-pod, per-ReplicaSet and per-PVC figures plus the completeness
problems found. It raises ``PrometheusUnavailable`` (naming the URL and the hour) before
anything is written when Prometheus does not answer.

``write_hour(conn, fetched)`` replaces the hour in one transaction: raw figures are COPYed into
temporary tables, then attribution and unit conversion are done in SQL (docs/rules/ingestion.md):

* attribution: the pod's ``satusky.io/deployment-id`` label if it names a row of
  ``billing.deployments``; a pod without the label goes through the legacy owner chain
  (pod -> ReplicaSet -> Deployment name, matched on ``deployments(namespace, name)``, preferring
  the deployment alive during the hour); anything else is kept as ``unattributed`` with an
  ``attribution_note`` saying why. ``account_id`` comes from ``billing.deployments``.
* quarantine (docs/rules/ingestion.md): a Kubernetes Deployment ``(namespace, name)`` claimed by live rows
  of ``billing.deployments`` (not deleted before the hour) of two or more accounts is billed to
  nobody, whichever path found its pods and volumes (the label naming one of the claiming rows,
  or the owner chain). Their usage stays ``unattributed`` with a note naming every claim, and the claim is
  recorded in ``billing.quarantined_rows`` (source ``deployments``) until a person removes the
  wrong claim (sets its ``deleted_at``); re-running the hours then bills them to the owner.
* units: cpu core-hours = increase / 3600; request core-hours = sum over present minutes / 60;
  GiB-hours = sum / 60 / 2^30; egress GiB = increase / 2^30; all as exact ``numeric``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

import psycopg

from billing_pipeline.core.errors import BillingError
from billing_pipeline.core.gc_pause import cyclic_gc_paused
from billing_pipeline.core.hours import HOUR
from billing_pipeline.ingestion import promql
from billing_pipeline.resources.prometheus import PrometheusResource, PrometheusUnavailable


@dataclass
class FetchedHour:
    hour: datetime
    prometheus_url: str
    containers: dict[tuple[str, str, str], dict[str, str]] = field(default_factory=dict)
    pods: dict[tuple[str, str], dict[str, object]] = field(default_factory=dict)
    replicasets: dict[tuple[str, str], str] = field(default_factory=dict)
    volumes: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    series: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class HourSummary:
    hour: datetime
    complete: bool
    problems: list[str]
    containers: int
    pods: int
    volumes: int
    unattributed_containers: int
    unattributed_cpu_share: float
    unattributed_memory_share: float
    quarantined_pods: int = 0  # pods of a doubly-claimed Deployment: billed to nobody


def _finite(value: str) -> bool:
    try:
        return math.isfinite(float(value))
    except ValueError:
        return False


def _minute_ranges(minutes: list[int]) -> str:
    out, start, prev = [], None, None
    for m in [*minutes, None]:
        if start is None:
            start = prev = m
        elif m is not None and m == prev + 1:
            prev = m
        else:
            out.append(f"{start:02d}" if start == prev else f"{start:02d}-{prev:02d}")
            start = prev = m
    return ", ".join(out)


POINTS_PER_QUERY = 2_000_000
"""Series x hours one range query may return: a chunk of hours is fetched in as few queries as
this allows (about 300 MB of parsed answer in this process at most)."""
MAX_HOURS_PER_QUERY = 24


def hours_per_query(series: int | None) -> int:
    """How many hours one range query takes when an hour has ``series`` result series (the
    largest of the queries); unknown (an instance that never ingested): one hour, to learn it."""
    if not series:
        return 1
    return max(1, min(MAX_HOURS_PER_QUERY, POINTS_PER_QUERY // series))


def last_series(conn: psycopg.Connection) -> int | None:
    """The largest query's series count of the last ingested hour (``metric_hours.series``)."""
    with conn.transaction():  # its own: each hour's write stays a transaction of its own
        row = conn.execute(
            "SELECT series FROM billing.metric_hours WHERE series IS NOT NULL ORDER BY hour DESC LIMIT 1"
        ).fetchone()
    if not row or not row[0]:
        return None
    return max((int(v) for v in row[0].values()), default=None)


def fetch_hour(prometheus: PrometheusResource, hour: datetime, clock: datetime) -> FetchedHour:
    """Query Prometheus for ``[hour, hour+1h)``; raise ``PrometheusUnavailable`` if it fails."""
    return fetch_hours(prometheus, [hour], clock)[0]


def fetch_in_groups(
    prometheus: PrometheusResource, hours: list[datetime], clock: datetime, series: int | None = None
) -> Iterator[FetchedHour]:
    """Every hour of ``hours`` (consecutive), fetched ``hours_per_query`` hours per range query
    (sized from ``series``, then from what each group returned); the next group is fetched while
    the caller writes the current one. A failed fetch raises when its group's turn comes."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch") as pool:
        done = 0
        future = pool.submit(fetch_hours, prometheus, hours[: hours_per_query(series)], clock)
        while future is not None:
            group = future.result()
            done += len(group)
            future = None
            if done < len(hours):
                size = hours_per_query(max(max(f.series.values(), default=0) for f in group))
                future = pool.submit(fetch_hours, prometheus, hours[done : done + size], clock)
            yield from group


def _per_step(results: list[dict], first: float, step: float, n: int) -> list[list[tuple[dict, str]]]:
    """A range query's matrix split by evaluation step: ``n`` lists of (labels, value)."""
    out: list[list[tuple[dict, str]]] = [[] for _ in range(n)]
    for r in results:
        metric = r["metric"]
        for ts, value in r.get("values", []):
            out[round((float(ts) - first) / step)].append((metric, value))
    return out


def _scrapes_per_hour(results: list[dict], first: float, n: int) -> list[list[tuple[dict, float]]]:
    """The per-minute scrape query's points split by hour: ``n`` lists of (labels, timestamp)."""
    out: list[list[tuple[dict, float]]] = [[] for _ in range(n)]
    for r in results:
        metric = r["metric"]
        for ts, _value in r.get("values", []):
            t = float(ts)
            out[int((t - first) // 3600)].append((metric, t))
    return out


def fetch_hours(prometheus: PrometheusResource, hours: list[datetime], clock: datetime) -> list[FetchedHour]:
    """Query Prometheus for the consecutive ``hours`` at once: each aggregated query as one range
    query with a one-hour step (the step at ``hour + 1h - 1ms`` is exactly that hour's instant
    query), the per-minute scrape query over all of them. Raise ``PrometheusUnavailable`` (naming
    the URL and the hours) if it fails: nothing of these hours is returned. The answers are parsed
    with the cyclic collector paused (core/gc_pause.py: millions of objects, no cycles)."""
    with cyclic_gc_paused():
        return _fetch_hours(prometheus, hours, clock)


def _fetch_hours(prometheus: PrometheusResource, hours: list[datetime], clock: datetime) -> list[FetchedHour]:
    first_hour, last_hour = hours[0], hours[-1]
    if len(hours) > 1 and last_hour - first_hour != HOUR * (len(hours) - 1):
        raise BillingError(f"hours {first_hour.isoformat()} .. {last_hour.isoformat()} are not consecutive")
    first_at, last_at = promql.eval_time(first_hour), promql.eval_time(last_hour)
    scrape_first, _ = promql.minute_steps(first_hour)
    _, scrape_last = promql.minute_steps(last_hour)
    if len(hours) == 1:
        label = f"for hour {first_hour:%Y-%m-%d %H:00} UTC"
    else:
        label = f"for hours {first_hour:%Y-%m-%d %H:00} to {last_hour:%Y-%m-%d %H:00} UTC"
    step = HOUR.total_seconds()
    jobs = {
        name: (lambda q=q: prometheus.query_range(q, first_at, last_at, step, what=label))
        for name, q in (("containers", promql.CONTAINERS), ("pods", promql.PODS), ("volumes", promql.VOLUMES))
    }
    jobs["scrapes"] = lambda: prometheus.query_range(promql.SCRAPES, scrape_first, scrape_last, 60, what=label)
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = {name: pool.submit(fn) for name, fn in jobs.items()}
        per_hour = {}
        for name, fut in futures.items():
            try:
                result = fut.result()
                if name == "scrapes":
                    per_hour[name] = _scrapes_per_hour(result, first_hour.timestamp(), len(hours))
                else:
                    per_hour[name] = _per_step(result, first_at, step, len(hours))
            except PrometheusUnavailable:
                raise
            except Exception as exc:  # a malformed answer is as bad as no answer
                raise PrometheusUnavailable(
                    f"Prometheus at {prometheus.url} gave an unusable answer {label}: {exc}. "
                    "Nothing was written for that hour."
                ) from None
    return [
        _hour_from(prometheus.url, hour, {name: rows[i] for name, rows in per_hour.items()}, clock)
        for i, hour in enumerate(hours)
    ]


def _hour_from(url: str, hour: datetime, results: dict[str, list[tuple[dict, str]]], clock: datetime) -> FetchedHour:
    """One hour's figures from its (labels, value) pairs of each query."""
    out = FetchedHour(hour=hour, prometheus_url=url)
    out.series = {name: len(results[name]) for name in ("containers", "pods", "volumes")}
    bad_values = 0

    for m, value in results["containers"]:
        if not _finite(value):
            bad_values += 1
            continue
        key = (m["namespace"], m["pod"], m["container"])
        row = out.containers.setdefault(key, {})
        q = m["q"]
        if q == "request_sum":
            row[f"request_{m['resource']}"] = value
        else:
            row[q] = value

    for m, value in results["pods"]:
        q = m["q"]
        if q == "replicaset_owner":
            out.replicasets[(m["namespace"], m["replicaset"])] = m["owner_name"]
            continue
        row = out.pods.setdefault((m["namespace"], m["pod"]), {})
        if q == "node_minutes":
            nodes = row.setdefault("nodes", {})
            nodes[m.get("node", "")] = float(value)
        elif q == "label":
            row["label"] = m["label_satusky_io_deployment_id"]
        elif q == "owner":
            row["owner"] = m["owner_name"]
        elif q == "egress_increase":
            if _finite(value):
                row["egress"] = value
            else:
                bad_values += 1
    for namespace, pod, _container in out.containers:
        out.pods.setdefault((namespace, pod), {})

    for m, value in results["volumes"]:
        row = out.volumes.setdefault((m["namespace"], m["persistentvolumeclaim"]), {})
        if m["q"] == "label":
            row["label"] = m["label_satusky_io_deployment_id"]
        elif _finite(value):
            row[m["q"]] = value
        else:
            bad_values += 1

    # Completeness: every minute of the hour must have samples from both exporters.
    seen: dict[str, set[int]] = {"cAdvisor": set(), "kube-state-metrics": set()}
    base = hour.timestamp()
    for m, ts in results["scrapes"]:
        seen.setdefault(m.get("source"), set()).add(int((ts - base) // 60))
    if hour + HOUR > clock:
        out.problems.append(
            f"the hour was not over at {clock:%Y-%m-%d %H:%M:%S} UTC (the run's clock): its metrics are still arriving"
        )
    if not seen["cAdvisor"] and not seen["kube-state-metrics"]:
        out.problems.append("Prometheus holds no cAdvisor or kube-state-metrics samples for this hour")
    else:
        for source, minutes in seen.items():
            missing = [m for m in range(60) if m not in minutes]
            if missing:
                out.problems.append(
                    f"{source}: no samples in {len(missing)} minute(s) of the hour (minutes {_minute_ranges(missing)}): scrape gap"
                )
    if bad_values:
        out.problems.append(f"{bad_values} value(s) were NaN or infinite and were left out")
    return out


# --- writing -------------------------------------------------------------------------------

_STAGING = """
CREATE TEMP TABLE stg_container (
    namespace text, pod text, container text, cpu_increase numeric, memory_sum numeric,
    usage_minutes int, request_cpu numeric, request_memory numeric, request_gpu numeric, request_minutes int
) ON COMMIT DROP;
CREATE TEMP TABLE stg_pod (
    namespace text, pod text, node text, label_deployment_id text, owner_replicaset text, egress_increase numeric
) ON COMMIT DROP;
CREATE TEMP TABLE stg_replicaset (namespace text, replicaset text, owner_deployment text) ON COMMIT DROP;
CREATE TEMP TABLE stg_volume (
    namespace text, persistentvolumeclaim text, bytes_sum numeric, bytes_max numeric, label_deployment_id text
) ON COMMIT DROP;
"""

_CLAIMED_TWICE = """
CREATE TEMP TABLE stg_claimed_twice ON COMMIT DROP AS
SELECT d.namespace, d.name,
       format('Kubernetes Deployment %%s/%%s is claimed by deployments of different accounts: %%s; its usage is '
              'billed to nobody until the wrong claim is removed from billing.deployments (set its deleted_at) '
              'and the hours are run again',
              d.namespace, d.name,
              string_agg(format('%%s (account %%s)', d.id, d.account_id), ', ' ORDER BY d.id)) AS reason,
       jsonb_agg(jsonb_build_object('id', d.id, 'account_id', d.account_id, 'created_at', d.created_at,
                                    'deleted_at', d.deleted_at) ORDER BY d.id) AS claims
FROM billing.deployments d
WHERE d.deleted_at IS NULL OR d.deleted_at > %(hour)s
GROUP BY d.namespace, d.name
HAVING count(DISTINCT d.account_id) > 1;
INSERT INTO billing.quarantined_rows (source_table, source_id, reason, row_data)
SELECT 'deployments', namespace || '/' || name, reason,
       jsonb_build_object('namespace', namespace, 'name', name, 'claims', claims)
FROM stg_claimed_twice
ON CONFLICT (source_table, source_id, reason) DO UPDATE
    SET last_seen_at = now(), row_data = EXCLUDED.row_data, resolved_at = NULL;
UPDATE billing.quarantined_rows q SET resolved_at = now()
WHERE q.source_table = 'deployments' AND q.resolved_at IS NULL
  AND NOT EXISTS (
      SELECT 1 FROM billing.deployments d
      WHERE d.namespace || '/' || d.name = q.source_id AND d.deleted_at IS NULL
      GROUP BY d.namespace, d.name HAVING count(DISTINCT d.account_id) > 1)
"""

_ATTRIBUTE_PODS = """
CREATE TEMP TABLE stg_pod_attribution ON COMMIT DROP AS
SELECT p.namespace, p.pod, p.node, p.egress_increase,
       CASE WHEN ql.name IS NULL THEN coalesce(dl.id, dc.id) END AS deployment_id,
       CASE WHEN ql.name IS NULL THEN coalesce(dl.account_id, dc.account_id) END AS account_id,
       CASE WHEN ql.name IS NOT NULL THEN 'unattributed'
            WHEN dl.id IS NOT NULL THEN 'label'
            WHEN dc.id IS NOT NULL THEN 'owner_chain'
            ELSE 'unattributed' END AS attribution,
       CASE WHEN ql.reason IS NOT NULL THEN
                format('quarantined: label satusky.io/deployment-id=%%s names Deployment %%s/%%s; %%s',
                       p.label_deployment_id, dl.namespace, dl.name, ql.reason)
            WHEN dl.id IS NOT NULL THEN NULL
            WHEN q.reason IS NOT NULL THEN
                format('quarantined: no satusky.io/deployment-id label; owner chain ReplicaSet %%s -> %%s',
                       p.owner_replicaset, q.reason)
            WHEN p.label_deployment_id IS NOT NULL THEN
                format('label satusky.io/deployment-id=%%s names no row of billing.deployments', p.label_deployment_id)
            WHEN dc.id IS NOT NULL THEN
                format('no satusky.io/deployment-id label; owner chain ReplicaSet %%s -> Deployment %%s/%%s',
                       p.owner_replicaset, p.namespace, r.owner_deployment)
            WHEN r.owner_deployment IS NOT NULL THEN
                format('no satusky.io/deployment-id label; owner chain ReplicaSet %%s -> Deployment %%s/%%s '
                       'matches no row of billing.deployments', p.owner_replicaset, p.namespace, r.owner_deployment)
            WHEN p.owner_replicaset IS NOT NULL THEN
                format('no satusky.io/deployment-id label; ReplicaSet %%s has no Deployment owner', p.owner_replicaset)
            ELSE 'no satusky.io/deployment-id label and no ReplicaSet owner in kube-state-metrics'
       END AS attribution_note
FROM stg_pod p
LEFT JOIN billing.deployments dl ON dl.id = p.label_deployment_id
-- The label names a row, but that row's Kubernetes Deployment may be claimed by another account
-- too: then the label is no better evidence than the owner chain, and the pod is billed to nobody.
LEFT JOIN stg_claimed_twice ql ON ql.namespace = dl.namespace AND ql.name = dl.name
LEFT JOIN stg_replicaset r
       ON p.label_deployment_id IS NULL AND r.namespace = p.namespace AND r.replicaset = p.owner_replicaset
LEFT JOIN stg_claimed_twice q ON q.namespace = p.namespace AND q.name = r.owner_deployment
LEFT JOIN LATERAL (
    SELECT d.id, d.account_id
    FROM billing.deployments d
    WHERE d.namespace = p.namespace AND d.name = r.owner_deployment
      AND q.name IS NULL  -- a doubly-claimed Deployment is billed to nobody, never to a guess
    ORDER BY (d.created_at < %(hour_end)s AND (d.deleted_at IS NULL OR d.deleted_at > %(hour)s)) DESC,
             d.created_at DESC, d.id
    LIMIT 1
) dc ON true;
CREATE UNIQUE INDEX ON stg_pod_attribution (namespace, pod);
"""

_REPLACE = """
DELETE FROM billing.metric_container_hours WHERE hour = %(hour)s;
DELETE FROM billing.metric_pod_network_hours WHERE hour = %(hour)s;
DELETE FROM billing.metric_volume_hours WHERE hour = %(hour)s;

INSERT INTO billing.metric_container_hours (
    hour, namespace, pod, container, node, deployment_id, account_id, attribution, attribution_note,
    present_minutes, cpu_usage_core_hours, cpu_request_core_hours, memory_usage_gib_hours,
    memory_request_gib_hours, gpu_request_hours)
SELECT %(hour)s, c.namespace, c.pod, c.container, a.node, a.deployment_id, a.account_id,
       a.attribution, a.attribution_note,
       least(60, greatest(coalesce(c.usage_minutes, 0), coalesce(c.request_minutes, 0))),
       coalesce(c.cpu_increase, 0) / 3600,
       coalesce(c.request_cpu, 0) / 60,
       coalesce(c.memory_sum, 0) / 60 / 1073741824,
       coalesce(c.request_memory, 0) / 60 / 1073741824,
       coalesce(c.request_gpu, 0) / 60
FROM stg_container c
JOIN stg_pod_attribution a USING (namespace, pod);

INSERT INTO billing.metric_pod_network_hours (
    hour, namespace, pod, node, deployment_id, account_id, attribution, attribution_note, egress_gib)
SELECT %(hour)s, a.namespace, a.pod, a.node, a.deployment_id, a.account_id, a.attribution,
       a.attribution_note, a.egress_increase / 1073741824
FROM stg_pod_attribution a
WHERE a.egress_increase IS NOT NULL;

INSERT INTO billing.metric_volume_hours (
    hour, namespace, persistentvolumeclaim, deployment_id, account_id, attribution, attribution_note,
    requested_bytes, storage_gib_hours)
SELECT %(hour)s, v.namespace, v.persistentvolumeclaim,
       CASE WHEN q.name IS NULL THEN d.id END, CASE WHEN q.name IS NULL THEN d.account_id END,
       CASE WHEN d.id IS NOT NULL AND q.name IS NULL THEN 'label' ELSE 'unattributed' END,
       CASE WHEN q.reason IS NOT NULL THEN
                format('quarantined: label satusky.io/deployment-id=%%s names Deployment %%s/%%s; %%s',
                       v.label_deployment_id, d.namespace, d.name, q.reason)
            WHEN d.id IS NOT NULL THEN NULL
            WHEN v.label_deployment_id IS NOT NULL THEN
                format('label satusky.io/deployment-id=%%s names no row of billing.deployments', v.label_deployment_id)
            ELSE 'no satusky.io/deployment-id label on the PersistentVolumeClaim' END,
       coalesce(v.bytes_max, 0), coalesce(v.bytes_sum, 0) / 60 / 1073741824
FROM stg_volume v
LEFT JOIN billing.deployments d ON d.id = v.label_deployment_id
LEFT JOIN stg_claimed_twice q ON q.namespace = d.namespace AND q.name = d.name
WHERE v.bytes_sum IS NOT NULL OR v.bytes_max IS NOT NULL;
"""

_UPSERT_HOUR = """
INSERT INTO billing.metric_hours (hour, complete, problems, prometheus_url, series, ingested_at)
VALUES (%(hour)s, %(complete)s, %(problems)s, %(url)s, %(series)s, now())
ON CONFLICT (hour) DO UPDATE SET complete = EXCLUDED.complete, problems = EXCLUDED.problems,
    prometheus_url = EXCLUDED.prometheus_url, series = EXCLUDED.series, ingested_at = EXCLUDED.ingested_at
"""

_SUMMARY = """
SELECT count(*) AS containers,
       count(*) FILTER (WHERE attribution = 'unattributed') AS unattributed,
       coalesce(sum(cpu_usage_core_hours), 0), coalesce(sum(cpu_usage_core_hours) FILTER (WHERE attribution = 'unattributed'), 0),
       coalesce(sum(memory_usage_gib_hours), 0), coalesce(sum(memory_usage_gib_hours) FILTER (WHERE attribution = 'unattributed'), 0)
FROM billing.metric_container_hours WHERE hour = %(hour)s
"""


def write_hour(conn: psycopg.Connection, fetched: FetchedHour) -> HourSummary:
    """Replace the hour's rows (one transaction): DELETE, COPY to staging, INSERT ... SELECT
    (the rows built with the cyclic collector paused, as the fetch)."""
    with cyclic_gc_paused():
        return _write_hour(conn, fetched)


def _write_hour(conn: psycopg.Connection, fetched: FetchedHour) -> HourSummary:
    hour = fetched.hour
    params = {"hour": hour, "hour_end": hour + HOUR}
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(_STAGING)
        with cur.copy("COPY stg_container FROM STDIN") as copy:
            for (ns, pod, container), r in fetched.containers.items():
                copy.write_row(
                    (
                        ns,
                        pod,
                        container,
                        r.get("cpu_increase"),
                        r.get("memory_sum"),
                        _int(r.get("usage_minutes")),
                        r.get("request_cpu"),
                        r.get("request_memory"),
                        r.get("request_nvidia_com_gpu"),
                        _int(r.get("request_minutes")),
                    )
                )
        with cur.copy("COPY stg_pod FROM STDIN") as copy:
            for (ns, pod), r in fetched.pods.items():
                nodes = r.get("nodes") or {}
                node = max(sorted(nodes), key=lambda n: nodes[n]) if nodes else None
                copy.write_row((ns, pod, node or None, r.get("label"), r.get("owner"), r.get("egress")))
        with cur.copy("COPY stg_replicaset FROM STDIN") as copy:
            for (ns, rs), owner in fetched.replicasets.items():
                copy.write_row((ns, rs, owner))
        with cur.copy("COPY stg_volume FROM STDIN") as copy:
            for (ns, pvc), r in fetched.volumes.items():
                copy.write_row((ns, pvc, r.get("bytes_sum"), r.get("bytes_max"), r.get("label")))
        cur.execute("ANALYZE stg_pod; ANALYZE stg_replicaset")
        _execute_all(cur, _CLAIMED_TWICE, params)
        _execute_all(cur, _ATTRIBUTE_PODS, params)
        _execute_all(cur, _REPLACE, params)
        cur.execute(
            _UPSERT_HOUR,
            {
                **params,
                "complete": not fetched.problems,
                "problems": json.dumps(fetched.problems),
                "url": fetched.prometheus_url,
                "series": json.dumps(fetched.series),
            },
        )
        n, unattributed, cpu, cpu_u, mem, mem_u = cur.execute(_SUMMARY, params).fetchone()
        pods = cur.execute("SELECT count(*) FROM stg_pod").fetchone()[0]
        quarantined = cur.execute(
            "SELECT count(*) FROM stg_pod_attribution WHERE attribution_note LIKE 'quarantined:%'"
        ).fetchone()[0]
        volumes = cur.execute(
            "SELECT count(*) FROM billing.metric_volume_hours WHERE hour = %(hour)s", params
        ).fetchone()[0]
    return HourSummary(
        hour=hour,
        complete=not fetched.problems,
        problems=list(fetched.problems),
        containers=n,
        pods=pods,
        volumes=volumes,
        unattributed_containers=unattributed,
        unattributed_cpu_share=float(cpu_u / cpu) if cpu else 0.0,
        unattributed_memory_share=float(mem_u / mem) if mem else 0.0,
        quarantined_pods=quarantined,
    )


def _execute_all(cur: psycopg.Cursor, script: str, params: dict) -> None:
    """Run a ``;``-separated script statement by statement (bound parameters allow only one)."""
    for statement in script.split(";\n"):
        if statement.strip():
            cur.execute(statement, params)


def _int(value: str | None) -> int | None:
    return None if value is None else int(float(value))


def ingest_metrics_hour(
    prometheus: PrometheusResource, conn: psycopg.Connection, hour: datetime, clock: datetime
) -> HourSummary:
    """Fetch then write one hour; nothing is written if Prometheus fails."""
    if hour.minute or hour.second or hour.microsecond:
        raise BillingError(f"{hour.isoformat()} is not the start of an hour")
    return write_hour(conn, fetch_hour(prometheus, hour, clock))


def quarantined_deployments(conn: psycopg.Connection) -> list[dict]:
    """Unresolved quarantine entries for doubly-claimed Deployments, oldest first (for reports)."""
    rows = conn.execute(
        "SELECT source_id, reason, row_data, first_seen_at FROM billing.quarantined_rows "
        "WHERE source_table = 'deployments' AND resolved_at IS NULL ORDER BY first_seen_at, source_id"
    ).fetchall()
    return [{"deployment": r[0], "reason": r[1], "row": r[2], "first_seen_at": r[3]} for r in rows]
