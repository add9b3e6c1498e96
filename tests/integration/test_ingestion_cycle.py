"""`billing run` / run_billing_window through Dagster: outages, rental corrections, the clock.

These tests are about the ingestion stage (``--only ingestion``); the whole cycle is tested in
test_dbt_dagster.py and test_orchestration.py."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import dagster as dg
import pytest

from billing_pipeline.cli.main import main
from billing_pipeline.db.connection import connect
from billing_pipeline.ingestion.rentals import stale_rental_hours
from billing_pipeline.orchestration import cycle
from billing_pipeline.orchestration.cycle import CycleError
from billing_pipeline.orchestration.graph import stale_rental_partitions
from devkit.synthetic import PrometheusServer, write_platform_rows
from tests.support.prometheus import SCENARIO_HOUR, T0, copy_tsdb, scenario_prometheus

pytestmark = pytest.mark.prometheus

H = timedelta(hours=1)
M = timedelta(minutes=1)


def ingestion_keys():
    from billing_pipeline.definitions import defs
    from billing_pipeline.orchestration.graph import stage_selection

    return list(stage_selection(["ingestion"]).resolve(defs.resolve_asset_graph()))


def run_ingestion(start, end, now):
    """The ingestion stage of the cycle for [start, end), as `billing run --only ingestion` runs it."""
    return cycle.run_billing_window(start, end, now, asset_selection=ingestion_keys())


def reslice(hour, now, instance=None):
    """Re-slice one hour's rentals with the cycle's own job, as a correction run starts with."""
    from billing_pipeline.definitions import defs
    from billing_pipeline.ingestion.assets import MACHINE_RENTAL_HOURS, QUARANTINED_ROWS

    result = defs.resolve_job_def("hourly_billing_job").execute_in_process(
        partition_key=hour.strftime("%Y-%m-%d-%H:%M"),
        instance=instance or dg.DagsterInstance.ephemeral(),
        tags={"billing/now": now.isoformat()},
        asset_selection=[MACHINE_RENTAL_HOURS, QUARANTINED_ROWS],
    )
    assert result.success


def metric_rows(url, hour) -> tuple:
    with connect(url) as conn:
        return tuple(
            conn.execute(f"SELECT count(*) FROM billing.{t} WHERE hour = %s", (hour,)).fetchone()[0]
            for t in ("metric_container_hours", "metric_pod_network_hours", "metric_volume_hours", "metric_hours")
        )


@pytest.fixture
def platform(db_url, scenario_prometheus, monkeypatch, tmp_path):
    with connect(db_url) as conn:
        write_platform_rows(conn, scenario_prometheus.cluster)
    monkeypatch.setenv("PROMETHEUS_URL", scenario_prometheus.url)
    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return db_url


def test_prometheus_down_fails_naming_url_and_hour_then_recovers(
    platform, scenario_prometheus, tmp_path, monkeypatch, capsys
):
    server = PrometheusServer(copy_tsdb(scenario_prometheus.tsdb, tmp_path / "tsdb")).start()
    try:
        monkeypatch.setenv("PROMETHEUS_URL", server.url)
        pid = server.pid
        server.stop()
        code = main(
            [
                "run",
                "--start",
                SCENARIO_HOUR.isoformat(),
                "--end",
                (SCENARIO_HOUR + H).isoformat(),
                "--now",
                (T0 + 30 * H).isoformat(),
                "--only",
                "ingestion",
            ]
        )
        err = capsys.readouterr().err
        assert code == 1
        assert server.url in err and "2025-03-01 01:00" in err and "Traceback" not in err
        assert metric_rows(platform, SCENARIO_HOUR) == (0, 0, 0, 0)
        with pytest.raises(ProcessLookupError):
            import os

            os.kill(pid, 0)  # stopped by PID: the process is gone

        server.start()  # same port, same data
        code = main(
            [
                "run",
                "--start",
                SCENARIO_HOUR.isoformat(),
                "--end",
                (SCENARIO_HOUR + H).isoformat(),
                "--now",
                (T0 + 30 * H).isoformat(),
                "--only",
                "ingestion",
                "--json",
            ]
        )
        out = json.loads(capsys.readouterr().out)
        assert code == 0
        assert [r["status"] for r in out["runs"]] == ["SUCCESS"]
        assert out["metrics"] == {"hours": 1, "complete": 1, "incomplete": []}
        assert metric_rows(platform, SCENARIO_HOUR) == (10, 9, 2, 1)
    finally:
        server.stop()


def test_a_window_is_one_ranged_run_on_dagster_home(platform):
    result = run_ingestion(T0 + 2 * H, T0 + 4 * H, now=T0 + 30 * H)
    assert [(r.status, r.launched_by) for r in result.runs] == [("SUCCESS", "in_process")]
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs()
        assert [r.run_id for r in runs] == [r.run_id for r in result.runs]
        (run,) = runs
        assert run.job_name == "hourly_billing_job" and run.remote_job_origin is not None  # shown under its job
        assert (run.tags["dagster/asset_partition_range_start"], run.tags["dagster/asset_partition_range_end"]) == (
            "2025-03-01-02:00",
            "2025-03-01-03:00",
        )
        assert run.tags["billing/now"] == (T0 + 30 * H).isoformat()
        materialized = instance.get_materialized_partitions(dg.AssetKey(["ingestion", "metric_hours"]))
        assert materialized == {"2025-03-01-02:00", "2025-03-01-03:00"}
    assert metric_rows(platform, T0 + 3 * H)[3] == 1


def test_ongoing_rental_counts_up_to_the_clock_then_is_resliced(platform):
    hour = T0 + 5 * H
    run_ingestion(hour, hour + H, now=hour + 20 * M)
    with connect(platform) as conn:
        row = conn.execute(
            "SELECT rented_seconds, is_ongoing FROM billing.machine_rental_hours "
            "WHERE hour = %s AND machine_usage_id = 'rent-ongoing'",
            (hour,),
        ).fetchone()
        complete, problems = conn.execute(
            "SELECT complete, problems FROM billing.metric_hours WHERE hour = %s", (hour,)
        ).fetchone()
        assert row == (Decimal(1200), True)
        assert not complete and "not over" in problems[0]
        assert stale_rental_hours(conn, hour + 20 * M) == []
        assert stale_rental_hours(conn, hour + 2 * H) == [hour]  # provisional, the clock moved on

    result = cycle.run_billing_window(hour + H, hour + 2 * H, hour + 2 * H + 5 * M, asset_selection=ingestion_keys())
    assert result.corrections == []  # a partial run (--only) leaves corrections to the whole cycle
    with connect(platform) as conn:
        assert stale_rental_hours(conn, hour + 2 * H + 5 * M) == [hour]
    reslice(hour, hour + 2 * H + 5 * M)
    with connect(platform) as conn:
        seconds = conn.execute(
            "SELECT rented_seconds FROM billing.machine_rental_hours "
            "WHERE hour = %s AND machine_usage_id = 'rent-ongoing'",
            (hour,),
        ).fetchone()[0]
        assert seconds == Decimal(3600)
        assert stale_rental_hours(conn, hour + 2 * H + 5 * M) == []


def test_corrected_rentals_reslice_exactly_the_hours_they_touch(platform, scenario_prometheus):
    now = T0 + 30 * H
    instance = dg.DagsterInstance.get()
    for i in range(6):
        reslice(T0 + i * H, now, instance)

    def rentals(usage_id):
        with connect(platform) as conn:
            return conn.execute(
                "SELECT hour, rented_seconds FROM billing.machine_rental_hours "
                "WHERE machine_usage_id = %s ORDER BY hour",
                (usage_id,),
            ).fetchall()

    # 1. rent-multi (00:30-03:10) ends earlier, at 02:20: its hours 00-03 are touched, 04-05 are not
    with connect(platform) as conn:
        conn.execute(
            "UPDATE billing.machine_usages SET ended_at = %s, updated_at = clock_timestamp() WHERE id = 'rent-multi'",
            (T0 + 2 * H + 20 * M,),
        )
        assert stale_rental_hours(conn, now) == [T0, T0 + H, T0 + 2 * H, T0 + 3 * H]
    for h in (T0, T0 + H, T0 + 2 * H, T0 + 3 * H):
        reslice(h, now, instance)
    assert rentals("rent-multi") == [(T0, 1800), (T0 + H, 3600), (T0 + 2 * H, 1200)]
    with connect(platform) as conn:
        assert stale_rental_hours(conn, now) == []

    # 2. rent-mid (01:15:30-01:40) now ends at 03:30, and the bad dates of rent-bad-dates are fixed:
    #    `billing run` of 05:00 re-slices (and re-prices and settles) hours 01-03 first
    with connect(platform) as conn:
        conn.execute(
            "UPDATE billing.machine_usages SET ended_at = %s, updated_at = clock_timestamp() WHERE id = 'rent-mid'",
            (T0 + 3 * H + 30 * M,),
        )
        conn.execute(
            "UPDATE billing.machine_usages SET ended_at = %s, updated_at = clock_timestamp() "
            "WHERE id = 'rent-bad-dates'",
            (T0 + 2 * H + 30 * M,),
        )
        assert stale_rental_hours(conn, now) == [T0 + H, T0 + 2 * H, T0 + 3 * H]
    with connect(platform) as conn:
        assert stale_rental_partitions(conn, now) == ["2025-03-01-01:00", "2025-03-01-02:00", "2025-03-01-03:00"]
        # What the next `billing run` of 05:00 settles first: those, and every hour outside its
        # window that was ingested but never settled (here only ingestion ran: 00..04).
        assert cycle.stale_hours_outside(conn, instance, T0 + 5 * H, T0 + 6 * H, now) == [
            f"2025-03-01-{h:02d}:00" for h in range(5)
        ]
    for h in (T0 + H, T0 + 2 * H, T0 + 3 * H):
        reslice(h, now, instance)
    assert rentals("rent-mid") == [(T0 + H, 2670), (T0 + 2 * H, 3600), (T0 + 3 * H, 1800)]
    assert rentals("rent-bad-dates") == [(T0 + 2 * H, 1800)]
    with connect(platform) as conn:
        resolved = conn.execute(
            "SELECT resolved_at IS NOT NULL FROM billing.quarantined_rows WHERE source_id = 'rent-bad-dates'"
        ).fetchone()[0]
        assert resolved
        assert stale_rental_hours(conn, now) == []


@pytest.mark.parametrize(
    "args, message",
    [
        (["--start", "yesterday", "--end", "2025-03-01T02:00Z"], "is not an ISO 8601 time"),
        (["--start", "2025-03-01T02:00Z", "--end", "2025-03-01T01:00Z"], "must be after --start"),
        (["--start", "2025-03-01T01:00Z", "--end", "2025-03-01T01:00Z"], "must be after --start"),
        (["--start", "2025-03-01T01:30Z", "--end", "2025-03-01T03:00Z"], "not on an hour boundary"),
        (["--start", "2024-12-31T00:00Z", "--end", "2025-01-01T03:00Z"], "before the first billable hour"),
        (["--start", "2025-03-01T00:00Z", "--end", "2025-03-01T03:00Z", "--now", "2025-03-01T01:10Z"], "has not begun"),
        (["--start", "2025-03-01T00:00Z", "--end", "2025-03-01T03:00Z", "--now", "soon"], "--now 'soon'"),
    ],
)
def test_run_rejects_bad_input_with_a_clear_message(args, message, capsys, db_url):
    assert main(["run", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    with connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM billing.metric_hours").fetchone()[0] == 0


def test_run_without_prometheus_url_says_what_to_set(db_url, monkeypatch, capsys):
    monkeypatch.delenv("PROMETHEUS_URL", raising=False)
    assert (
        main(["run", "--start", "2025-03-01T00:00Z", "--end", "2025-03-01T01:00Z", "--now", "2025-03-01T01:10Z"]) == 3
    )
    assert "PROMETHEUS_URL is not set" in capsys.readouterr().err


def test_a_failed_chunk_stops_the_window_and_names_url_and_hour(platform, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    result = run_ingestion(T0, T0 + 48 * H, now=T0 + 50 * H)
    (problem,) = result.problems
    assert "http://127.0.0.1:9" in problem and "2025-03-01 00:00" in problem
    # Stopped after the first chunk of 24 hours: later hours build on earlier ones.
    assert [(r.status, r.tags["dagster/asset_partition_range_start"]) for r in result.runs] == [
        ("FAILURE", "2025-03-01-00:00")
    ]
    with pytest.raises(CycleError, match="127.0.0.1:9"):
        raise CycleError(result)
