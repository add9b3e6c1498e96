"""Floors for the cycle benchmark: per stage, the bare PromQL or SQL it cannot avoid, timed alone
on the same data right after the measured cycle. Each floor is run twice and the faster run kept
(the first run warms the same caches the stage found warm).

- ingestion: the hour's aggregated PromQL (``billing_pipeline.ingestion.promql``: the three
  instant queries and the per-minute range query, four at once as ingestion sends them) over
  Prometheus' HTTP API, answers parsed from JSON; plus a COPY of the hour's ingested rows (the
  same number, read back untimed from the ingestion tables) into temp tables shaped like them.
- ingestion over a window of hours (a ranged run, ``ingestion_window_floor``): the same queries
  as range queries with a one-hour step (the per-minute scrape query with a one-minute step),
  in groups of as many hours as ``metrics.hours_per_query`` gives for the hour's series, the
  four of a group at once, as the ingestion sends them; plus a COPY of the window's rows.
- dbt_usage_models / dbt_ledger_models: the seconds dbt itself reports for the models of that
  invocation (sum of ``execution_time`` of the ``model.*`` results in the run_results.json the
  invocation wrote); the stage minus this is dbt's start-up, parse and Dagster's bookkeeping.
- settlement: the set-based SELECT of the hour's charges from ``analytics.fct_usage_charges``
  plus an INSERT of as many rows as the cycle posted into a temp table shaped like the ledger
  (``LIKE billing.credit_transactions``, the posted rows copied).
- top-ups: the module's own selection of accounts that qualify (``topup._STATE``).
- alerts: the module's own balance/state/burn-rate selection (``balance._state_sql``).
- lifecycle: every account's balance mapped to its state by the lifecycle machine's rule
  (``state_sql``), the selection the engine starts from.
- deliveries, run overhead: no floor (nothing to deliver in the benchmark; overhead is all
  code): shown as "—".
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import psycopg
import requests
from psycopg.types.json import Jsonb

from billing_pipeline.ingestion import promql

INGESTION_TABLES = (
    "billing.metric_hours",
    "billing.metric_container_hours",
    "billing.metric_pod_network_hours",
    "billing.metric_volume_hours",
    "billing.machine_rental_hours",
)


def _best_of_two(fn) -> float:
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _existing(conn: psycopg.Connection, tables) -> list[str]:
    return [t for t in tables if conn.execute("SELECT to_regclass(%s) IS NOT NULL", (t,)).fetchone()[0]]


def _send_at_once(session: requests.Session, prom_url: str, calls: list[tuple[str, dict]]) -> list[int]:
    """The calls (API path, form) sent at once, as the ingestion sends an hour's queries; each
    answer parsed from JSON; the number of result series of each."""

    def one(call):
        path, params = call
        answer = session.post(f"{prom_url}/api/v1/{path}", data=params, timeout=600)
        answer.raise_for_status()
        return len(answer.json()["data"]["result"])

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(one, calls))


def _ingested_rows_copy_floor(conn: psycopg.Connection, first_hour: datetime, last_hour: datetime):
    """The ingested rows of ``[first_hour, last_hour]`` (read back untimed) and the best of two
    COPYs of them into temp tables shaped like their tables: the ingestion floor's write half."""
    rows = {
        t: [
            tuple(Jsonb(v) if isinstance(v, (dict, list)) else v for v in row)
            for row in conn.execute(f"SELECT * FROM {t} WHERE hour >= %s AND hour <= %s", (first_hour, last_hour))
        ]
        for t in _existing(conn, INGESTION_TABLES)
    }

    def copy_rows():
        with conn.transaction(force_rollback=True), conn.cursor() as cur:
            for i, (table, table_rows) in enumerate(rows.items()):
                cur.execute(f"CREATE TEMP TABLE floor_ingest_{i} (LIKE {table}) ON COMMIT DROP")
                with cur.copy(f"COPY floor_ingest_{i} FROM STDIN") as copy:
                    for row in table_rows:
                        copy.write_row(row)

    return rows, _best_of_two(copy_rows)


def ingestion_floor(conn: psycopg.Connection, prom_url: str, hour: datetime) -> dict:
    at = promql.eval_time(hour)
    first, last = promql.minute_steps(hour)
    session = requests.Session()
    calls = [
        ("query", {"query": promql.CONTAINERS, "time": f"{at:.3f}"}),
        ("query", {"query": promql.PODS, "time": f"{at:.3f}"}),
        ("query", {"query": promql.VOLUMES, "time": f"{at:.3f}"}),
        ("query_range", {"query": promql.SCRAPES, "start": f"{first:.3f}", "end": f"{last:.3f}", "step": "60"}),
    ]

    def queries():
        return _send_at_once(session, prom_url, calls)

    series = queries()
    promql_s = _best_of_two(queries)
    rows, copy_s = _ingested_rows_copy_floor(conn, hour, hour)
    return {
        "seconds": promql_s + copy_s,
        "promql_seconds": round(promql_s, 3),
        "copy_seconds": round(copy_s, 3),
        "series": series,
        "rows": {t: len(r) for t, r in rows.items()},
    }


def ingestion_window_floor(conn: psycopg.Connection, prom_url: str, hours: list[datetime]) -> dict:
    """The ingestion floor of a window of consecutive hours, as a ranged run fetches it."""
    from billing_pipeline.ingestion.metrics import hours_per_query, last_series

    session = requests.Session()
    group = hours_per_query(last_series(conn))
    groups = [hours[i : i + group] for i in range(0, len(hours), group)]

    def queries():
        series = 0
        for g in groups:
            first, last = promql.eval_time(g[0]), promql.eval_time(g[-1])
            scrape_first, scrape_last = promql.minute_steps(g[0])[0], promql.minute_steps(g[-1])[1]
            span = {"start": f"{first:.3f}", "end": f"{last:.3f}", "step": "3600"}
            calls = [("query_range", {"query": q, **span}) for q in (promql.CONTAINERS, promql.PODS, promql.VOLUMES)]
            calls.append(
                (
                    "query_range",
                    {
                        "query": promql.SCRAPES,
                        "start": f"{scrape_first:.3f}",
                        "end": f"{scrape_last:.3f}",
                        "step": "60",
                    },
                )
            )
            series += sum(_send_at_once(session, prom_url, calls))
        return series

    series = queries()
    promql_s = _best_of_two(queries)
    rows, copy_s = _ingested_rows_copy_floor(conn, hours[0], hours[-1])
    return {
        "seconds": promql_s + copy_s,
        "promql_seconds": round(promql_s, 3),
        "copy_seconds": round(copy_s, 3),
        "hours": len(hours),
        "hours_per_query": group,
        "series": series,
        "rows": {t: len(r) for t, r in rows.items()},
    }


def dbt_model_seconds(instance, run_ids: list[str]) -> list[dict]:
    """The dbt steps of the given Dagster runs, in order: their models' summed execution time as
    dbt reported it (dagster-dbt's "Execution Duration" on each model's materialization; a ranged
    run records one materialization per hour, with the same duration, so each model is counted
    once per step) and the step's elapsed time."""
    from dagster._core.events import DagsterEventType

    found = []
    for run_id in run_ids:
        records = instance.get_records_for_run(
            run_id,
            of_type={
                DagsterEventType.ASSET_MATERIALIZATION,
                DagsterEventType.STEP_START,
                DagsterEventType.STEP_SUCCESS,
            },
            limit=1_000_000,
        ).records
        steps: dict[str, dict] = {}
        for record in records:
            entry = record.event_log_entry
            event = entry.dagster_event
            if not event.step_key or "dbt_" not in event.step_key:
                continue
            step = steps.setdefault(event.step_key, {"models": {}, "start": None, "end": None})
            if event.event_type_value == "STEP_START":
                step["start"] = entry.timestamp
            elif event.event_type_value == "STEP_SUCCESS":
                step["end"] = entry.timestamp
            else:
                mat = event.step_materialization_data.materialization
                duration = mat.metadata.get("Execution Duration")
                if duration is not None:
                    step["models"][mat.asset_key.to_user_string()] = float(duration.value)
        for key, step in steps.items():
            found.append(
                {
                    "step": key,
                    "run_id": run_id,
                    "models": len(step["models"]),
                    "model_seconds": round(sum(step["models"].values()), 3),
                    "elapsed_time": round((step["end"] or 0) - (step["start"] or 0), 3),
                    "has_balances": any("fct_account_balances" in k for k in step["models"]),
                }
            )
    return found


def settlement_floor(conn: psycopg.Connection, hour: datetime, end: datetime, posted_after_id: int) -> dict:
    posted = conn.execute(
        "SELECT count(*) FROM billing.credit_transactions WHERE id > %s", (posted_after_id,)
    ).fetchone()[0]
    charges = []

    def run():
        with conn.transaction(force_rollback=True):
            charges[:] = conn.execute(
                "SELECT account_id, hour, usage_kind, amount, priced_row_count FROM analytics.fct_usage_charges "
                "WHERE hour >= %s AND hour < %s",
                (hour, end),
            ).fetchall()
            conn.execute("CREATE TEMP TABLE floor_ledger (LIKE billing.credit_transactions) ON COMMIT DROP")
            conn.execute(
                "INSERT INTO floor_ledger SELECT * FROM billing.credit_transactions WHERE id > %s", (posted_after_id,)
            )

    return {"seconds": _best_of_two(run), "charges": len(charges), "entries": posted}


def topup_floor(conn: psycopg.Connection, now: datetime) -> dict:
    from billing_pipeline.payments import topup

    found = []
    seconds = _best_of_two(
        lambda: found.__setitem__(
            slice(None), conn.execute(topup._STATE, {"account": None, "month": topup._month(now)}).fetchall()
        )
    )
    return {"seconds": seconds, "accounts": len(found)}


def alerts_floor(conn: psycopg.Connection) -> dict:
    from billing_pipeline.alerts import balance

    statement, _source = balance._state_sql(conn)
    found = []
    seconds = _best_of_two(lambda: found.__setitem__(slice(None), conn.execute(statement).fetchall()))
    return {"seconds": seconds, "accounts": len(found)}


def lifecycle_floor(conn: psycopg.Connection) -> dict:
    from billing_pipeline.lifecycle.machine import state_sql

    statement = (
        "SELECT a.id, "
        + state_sql("coalesce(c.balance, 0)", "a.low_balance_threshold")
        + " FROM billing.accounts a LEFT JOIN billing.credits c ON c.account_id = a.id"
    )
    found = []
    seconds = _best_of_two(lambda: found.__setitem__(slice(None), conn.execute(statement).fetchall()))
    return {"seconds": seconds, "accounts": len(found)}
