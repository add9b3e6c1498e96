"""The daemon's sensors and schedules, evaluated against the real Definitions and real runs.

Every sensor starts from the present on a new instance (its first evaluation launches nothing),
then launches once per new event it answers, and never for work a later run already did.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import dagster as dg
import pytest

from billing_pipeline.core.asset_keys import ACCOUNT_LIFECYCLE, LEDGER
from billing_pipeline.core.clock import CLOCK_TAG
from billing_pipeline.db.connection import connect
from billing_pipeline.ingestion.assets import MACHINE_RENTAL_HOURS, QUARANTINED_ROWS
from tests.support.payments import create_priced_usage_mart, replace_priced_usage, set_balance
from tests.support.platform import create_accounts

H = datetime(2026, 11, 24, 10, tzinfo=UTC)
PARTITION = "2026-11-24-10:00"
TAGS = {CLOCK_TAG: (H + timedelta(hours=2)).isoformat()}


@pytest.fixture
def defs():
    from billing_pipeline.definitions import defs

    return defs


@pytest.fixture
def instance():
    with dg.DagsterInstance.ephemeral() as inst:
        yield inst


class Ticker:
    """Evaluates a sensor of the real Definitions tick after tick, carrying its cursor as the daemon does."""

    def __init__(self, defs, name, instance):
        self.defs, self.sensor, self.instance, self.cursor = defs, defs.resolve_sensor_def(name), instance, None

    def tick(self):
        with dg.build_sensor_context(
            instance=self.instance,
            cursor=self.cursor,
            definitions=self.defs,
            resources={"postgres": self.defs.resources["postgres"]},
        ) as context:
            result = self.sensor.evaluate_tick(context)
        self.cursor = result.cursor
        return result


def slice_rentals(defs, instance, partition=PARTITION):
    """A real run of the cycle's rental ingestion for one hour."""
    result = defs.resolve_job_def("hourly_billing_job").execute_in_process(
        partition_key=partition, instance=instance, tags=TAGS, asset_selection=[MACHINE_RENTAL_HOURS, QUARANTINED_ROWS]
    )
    assert result.success


def settle(defs, instance, partition=PARTITION):
    result = defs.resolve_job_def("credit_usage_job").execute_in_process(
        partition_key=partition, instance=instance, tags=TAGS
    )
    assert result.success


def test_every_sensor_and_schedule_ships_in_its_documented_state(defs):
    sensors = {s.name: s.default_status for s in defs.sensors}
    schedules = {s.name: s.default_status for s in defs.schedules}
    running, stopped = dg.DefaultSensorStatus.RUNNING, dg.DefaultSensorStatus.STOPPED
    assert sensors == {
        "corrections_sensor": running,
        "balance_change_sensor": running,
        "rental_corrections_sensor": stopped,
        # Tags runs whose ERROR checks failed (orchestration/run_checks.py); launches nothing.
        "failed_checks_sensor": running,
    }
    assert schedules == {
        "hourly_billing_job_schedule": dg.DefaultScheduleStatus.STOPPED,
        "auto_topup_retry_schedule": dg.DefaultScheduleStatus.RUNNING,
        "notification_retry_schedule": dg.DefaultScheduleStatus.RUNNING,
        "grace_deadline_schedule": dg.DefaultScheduleStatus.RUNNING,
        # Off with the hourly schedule: a month is only ever settled by the cycle (issue 23).
        "month_close_schedule": dg.DefaultScheduleStatus.STOPPED,
        # Off: with Prometheus stopped (plain `dagster dev` after the demo) its runs would fail.
        "source_observation_schedule": dg.DefaultScheduleStatus.STOPPED,
    }
    # One name and a description for each, as the UI lists them.
    undescribed = [s.name for s in [*defs.sensors, *defs.schedules] if not (s.description or "").strip()]
    assert undescribed == []
    assert {s.name: s.job_name for s in defs.sensors if s.name != "failed_checks_sensor"} == {
        "corrections_sensor": "hourly_billing_job",
        "rental_corrections_sensor": "hourly_billing_job",
        "balance_change_sensor": "account_actions_job",
    }


def test_corrections_sensor_starts_from_the_present_then_settles_a_re_ingested_hour(db_url, defs, instance):
    create_accounts(db_url, "acme")
    create_priced_usage_mart(db_url)
    ticker = Ticker(defs, "corrections_sensor", instance)
    slice_rentals(defs, instance)  # ingested, never settled: work of the past

    first = ticker.tick()
    assert first.run_requests == [] and "first evaluation" in first.skip_message
    assert ticker.tick().run_requests == []

    slice_rentals(defs, instance)  # re-ingested from now on: its settlement is out of date
    requests = ticker.tick().run_requests
    assert [r.partition_key for r in requests] == [PARTITION]
    selection = {k.to_user_string() for k in requests[0].asset_selection}
    assert "ledger/credit_transactions" in selection and "lifecycle/account_lifecycle" in selection
    assert not any(k.startswith("ingestion/") for k in selection)  # Prometheus is not asked again
    assert ticker.tick().run_requests == []  # the same event is never answered twice

    # Re-ingested, then settled before the sensor looked: nothing to do.
    slice_rentals(defs, instance)
    replace_priced_usage(db_url, H, [("acme", "workload_consumption", "cpu", "1.5")])
    settle(defs, instance)
    assert ticker.tick().run_requests == []
    with connect(db_url) as conn:
        assert conn.execute("SELECT sum(amount) FROM billing.credit_transactions").fetchone()[0] == Decimal("-1.5")


def test_corrections_sensor_waits_while_a_run_of_the_lane_is_in_progress(db_url, defs, instance):
    create_accounts(db_url, "acme")
    ticker = Ticker(defs, "corrections_sensor", instance)
    ticker.tick()
    slice_rentals(defs, instance)
    job = defs.resolve_job_def("credit_usage_job")
    instance.create_run_for_job(job, tags={"billing/lane": "money"}, status=dg.DagsterRunStatus.STARTED)
    assert "in progress" in ticker.tick().skip_message


def test_rental_corrections_sensor_requests_the_touched_hours_once_per_correction(db_url, defs, instance):
    create_accounts(db_url, "acme")
    with connect(db_url) as conn:
        conn.execute(
            "INSERT INTO billing.machine_usages (id, account_id, machine_id, machine_type, node_name, "
            "started_at, ended_at, updated_at) VALUES ('r1', 'acme', 'm1', 'std', 'n1', %s, %s, now())",
            (H, H + timedelta(minutes=90)),
        )
    for partition in (PARTITION, "2026-11-24-11:00"):
        slice_rentals(defs, instance, partition)
    ticker = Ticker(defs, "rental_corrections_sensor", instance)
    assert ticker.tick().run_requests == []

    with connect(db_url) as conn:
        conn.execute(
            "UPDATE billing.machine_usages SET ended_at = %s, updated_at = clock_timestamp() WHERE id = 'r1'",
            (H + timedelta(minutes=30),),
        )
    requests = ticker.tick().run_requests
    assert [r.partition_key for r in requests] == [PARTITION, "2026-11-24-11:00"]
    again = ticker.tick().run_requests
    assert [r.run_key for r in again] == [r.run_key for r in requests]  # the daemon launches each key once
    assert "ingestion/machine_rental_hours" in {k.to_user_string() for k in requests[0].asset_selection}


def test_balance_change_sensor_acts_after_a_change_outside_the_cycle_only(db_url, defs, instance):
    create_accounts(db_url, "acme")
    set_balance(db_url, "acme", Decimal("10"), "t1")
    ticker = Ticker(defs, "balance_change_sensor", instance)
    assert ticker.tick().run_requests == []  # starts from the present

    set_balance(db_url, "acme", Decimal("5"), "t2")  # a manual top-up
    requests = ticker.tick().run_requests
    assert len(requests) == 1 and requests[0].run_key.startswith("balances@")
    assert ticker.tick().run_requests == []

    # A change the lifecycle already acted on (as the cycle does after settling) launches nothing.
    set_balance(db_url, "acme", Decimal("5"), "t3")
    result = defs.resolve_job_def("grace_period_job").execute_in_process(instance=instance, tags=TAGS)
    assert result.success
    assert instance.get_latest_materialization_event(ACCOUNT_LIFECYCLE) is not None
    skipped = ticker.tick()
    assert skipped.run_requests == [] and "already ran" in skipped.skip_message
    assert instance.get_latest_materialization_event(LEDGER) is None
