"""Dagster as the one orchestrator: the lineage, and the daemon and `billing run` sharing an instance.

* The asset graph runs unbroken from Prometheus and the platform tables through ingestion, dbt
  and the ledger's settlement to top-ups, the lifecycle, alerts and deliveries.
* After a cycle, `dagster dev` (web server and daemon) on the same instance launches nothing for
  work already done; then two `billing run` over the same window, with the daemon running, go
  through its queue: no failed run, never two runs of the lane at once, and the ledger equals the
  bill.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import time
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.events import DagsterEventType

from billing_pipeline.core.asset_keys import (
    ACCOUNT_LIFECYCLE,
    AUTO_TOPUPS,
    BALANCE_ALERTS,
    LEDGER,
    NOTIFICATION_DELIVERIES,
    PROMETHEUS,
)
from billing_pipeline.db.dagster_instance import prepare_dagster_home
from devkit.synthetic import PrometheusServer, build_tsdb, free_port
from tests.support.cycle import (
    BIN,
    REPO,
    START,
    H,
    billing,
    billing_process,
    environment,
    ledger_differs_from_charges,
    load_priced_platform,
    small_cluster,
)


def upstream(graph, key) -> set[dg.AssetKey]:
    seen, todo = set(), [key]
    while todo:
        for parent in graph.get(todo.pop()).parent_keys:
            if parent not in seen:
                seen.add(parent)
                todo.append(parent)
    return seen


def test_the_lineage_runs_from_prometheus_to_the_money_and_the_cluster():
    from billing_pipeline.definitions import defs
    from billing_pipeline.transform.assets import dbt_model_key

    graph = defs.resolve_asset_graph()
    charges = dbt_model_key("fct_usage_charges")
    # Prometheus -> ingestion -> dbt -> the settlement ...
    assert {
        PROMETHEUS,
        dg.AssetKey(["ingestion", "metric_container_hours"]),
        dg.AssetKey(["platform", "machine_usages"]),
        charges,
    } <= upstream(graph, LEDGER)
    assert graph.get(LEDGER).parent_keys == {charges}
    # ... -> top-ups -> lifecycle -> balances -> alerts -> deliveries, each after the one before.
    assert LEDGER in graph.get(AUTO_TOPUPS).parent_keys
    assert {LEDGER, AUTO_TOPUPS} <= graph.get(ACCOUNT_LIFECYCLE).parent_keys
    assert {AUTO_TOPUPS, dbt_model_key("fct_account_balances")} <= graph.get(BALANCE_ALERTS).parent_keys
    assert ACCOUNT_LIFECYCLE in upstream(graph, dbt_model_key("fct_account_balances"))
    assert {BALANCE_ALERTS, ACCOUNT_LIFECYCLE} <= graph.get(NOTIFICATION_DELIVERIES).parent_keys
    assert PROMETHEUS in upstream(graph, NOTIFICATION_DELIVERIES)
    # The external systems show as kinds on their nodes.
    assert "prometheus" in graph.get(PROMETHEUS).kinds
    assert "stripe" in graph.get(AUTO_TOPUPS).kinds and "kubernetes" in graph.get(ACCOUNT_LIFECYCLE).kinds
    # One job holds the whole cycle; the jobs of docs/rules/README.md exist.
    cycle = defs.resolve_job_def("hourly_billing_job")
    assert {LEDGER, AUTO_TOPUPS, ACCOUNT_LIFECYCLE, BALANCE_ALERTS, NOTIFICATION_DELIVERIES, charges} <= set(
        cycle.asset_layer.selected_asset_keys
    )
    for name in ("credit_usage_job", "balance_alert_job", "auto_topup_job", "grace_period_job"):
        assert defs.resolve_job_def(name).tags["billing/lane"] == "money"


def test_windows_and_corrections_are_cut_into_ranged_runs():
    from billing_pipeline.orchestration.cycle import chunks, consecutive_ranges

    assert chunks(START, START + 50 * H, 24) == [
        (START, START + 24 * H),
        (START + 24 * H, START + 48 * H),
        (START + 48 * H, START + 50 * H),
    ]
    # Consecutive stale hours become one run; a gap starts another; no run exceeds the chunk size.
    hours = [START + h * H for h in (7, 0, 1, 2, 5, 6)]
    assert consecutive_ranges(hours, 2) == [
        (START, START + 2 * H),
        (START + 2 * H, START + 3 * H),
        (START + 5 * H, START + 7 * H),
        (START + 7 * H, START + 8 * H),
    ]


def test_billing_run_creates_its_runs_under_the_workspace_location_name():
    import yaml

    from billing_pipeline.orchestration.launcher import DEFINITIONS_MODULE, LOCATION_NAME

    (entry,) = yaml.safe_load((REPO / "workspace.yaml").read_text())["load_from"]
    assert entry["python_module"]["location_name"] == LOCATION_NAME
    assert entry["python_module"]["module_name"] == DEFINITIONS_MODULE


def _wait(condition, seconds: float, what: str, process: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{what}: the process exited\n" + (log.read_text() if log else ""))
        if condition():
            return
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}" + ("\n" + log.read_text()[-3000:] if log else ""))


def launched_for_past_work(instance, before: set[str]) -> list:
    """Runs the daemon started on its own for work that was already done: any run a sensor
    launched, or any run of an hour's partition. (A schedule's tick in the present, e.g. the
    10-minute notification retry, is new work and may happen while the test runs.)"""
    return [
        (r.job_name, dict(r.tags))
        for r in instance.get_runs()
        if r.run_id not in before
        and "billing/cycle" not in r.tags
        and (
            "dagster/sensor_name" in r.tags
            or "dagster/partition" in r.tags
            or "dagster/asset_partition_range_start" in r.tags
        )
    ]


def _sensor_ticks(instance) -> dict[str, int]:
    from dagster._core.definitions.run_request import InstigatorType

    return {
        state.instigator_name: len(instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=5))
        for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
    }


@pytest.mark.prometheus
@pytest.mark.slow
def test_daemon_and_billing_run_share_the_instance_without_collisions(db_url, tmp_path):
    cluster = small_cluster(hours=3)
    server = PrometheusServer(build_tsdb(cluster, tmp_path / "tsdb")).start()
    home = prepare_dagster_home(db_url, tmp_path / "dagster_home")  # PostgreSQL storage and the run queue
    env = environment(db_url, server.url, home)
    window = ["--start", START.isoformat(), "--end", (START + 3 * H).isoformat(), "--now", (START + 4 * H).isoformat()]
    dev_log = tmp_path / "dagster-dev.log"
    dev = None
    try:
        load_priced_platform(db_url, cluster)
        # 1. A first cycle, with no daemon: the runs execute in the `billing` process.
        code, first, err = billing(["run", *window], env)
        assert code == 0, err
        assert [r["launched_by"] for r in first["runs"]] == ["in_process"]
        assert ledger_differs_from_charges(db_url) == []
        with dg.DagsterInstance.from_config(str(home)) as instance:
            (run,) = instance.get_runs()
            # The run says where it came from (the UI shows the user instead of "Manually launched").
            assert run.tags["billing/origin"] == "cli" and run.tags["user"].endswith("(billing CLI)")
            assert run.tags["billing/command"] == "billing run " + " ".join(window) + " --json"
            assert "billing/checks" not in run.tags  # no ERROR check failed
            # Every Python asset that writes rows says how many (dbt's tables get theirs from dbt).
            counts = {
                m.asset_key.to_user_string(): m.metadata.get("dagster/row_count")
                for m in (
                    r.event_log_entry.asset_materialization
                    for r in instance.get_records_for_run(
                        run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION
                    ).records
                )
                if m.asset_key.path[0] in ("ingestion", "ledger", "payments", "lifecycle", "alerts")
            }
            assert len(counts) == 14 and None not in counts.values(), counts  # 13 + ledger/grant_expiry
            assert "ledger/grant_expiry" in counts

        # 2. `dagster dev` on that instance: the sensors start from the present, nothing is launched.
        dev = subprocess.Popen(
            [str(BIN / "dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(free_port())],
            cwd=REPO,
            env=env,
            stdout=open(dev_log, "w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        with dg.DagsterInstance.from_config(str(home)) as instance:
            runs_before = {r.run_id for r in instance.get_runs()}
            _wait(
                lambda: instance.get_daemon_heartbeats().get("QUEUED_RUN_COORDINATOR") is not None,
                300,
                "the daemon's run queue",
                dev,
                dev_log,
            )
            _wait(
                lambda: (
                    all(n >= 1 for n in _sensor_ticks(instance).values())
                    and {"corrections_sensor", "balance_change_sensor"} <= set(_sensor_ticks(instance))
                ),
                300,
                "a first tick of every running sensor",
                dev,
                dev_log,
            )
            assert not launched_for_past_work(instance, runs_before)

            # 3. Two `billing run` of the same window at once, through the daemon's queue.
            processes = [billing_process(["run", *window], env, tmp_path / f"run-{i}.log") for i in range(2)]
            outputs = [p.communicate(timeout=900)[0] for p in processes]
            assert [p.returncode for p in processes] == [0, 0], [
                (tmp_path / f"run-{i}.log").read_text()[-2000:] for i in range(2)
            ]
            import json

            documents = [json.loads(o) for o in outputs]
            assert {r["launched_by"] for d in documents for r in d["runs"]} == {"queue"}
            # Let the sensors look at what those runs did: they launch nothing either.
            ticks = _sensor_ticks(instance)
            _wait(
                lambda: all(_sensor_ticks(instance)[name] > n for name, n in ticks.items() if n < 5),
                300,
                "another tick of every running sensor",
                dev,
                dev_log,
            )

            # A schedule's tick may still be running; every run that finished succeeded.
            records = [r for r in instance.get_run_records() if r.end_time is not None]
            assert all(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in records), [
                (r.dagster_run.job_name, r.dagster_run.status) for r in records
            ]
            assert not launched_for_past_work(instance, runs_before)
            assert len([r for r in records if "billing/cycle" in r.dagster_run.tags]) == 3
            lane = sorted((r.start_time, r.end_time) for r in records if r.dagster_run.tags.get("billing/lane"))
            for (_, end), (start, _) in itertools.pairwise(lane):
                assert end <= start  # never two runs of the lane at once
        assert ledger_differs_from_charges(db_url) == []
        assert sum(d["posted"]["entries"] for d in documents) == 0  # the bill was already settled
    finally:
        if dev is not None:
            os.killpg(dev.pid, signal.SIGTERM)
            try:
                dev.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(dev.pid, signal.SIGKILL)
        server.stop()
