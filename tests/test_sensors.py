"""Sensors: each job is launched once per new materialisation of what it depends on, else skipped."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import dagster as dg
import psycopg
import pytest
from dagster_dbt import get_asset_key_for_model

from billing_pipeline.alerts.defs import balance_alert_job, balance_alert_sensor
from billing_pipeline.ledger.defs import LEDGER_ASSET_KEY, credit_usage_job, credit_usage_sensor
from billing_pipeline.payments.defs import auto_topup_job, auto_topup_sensor
from billing_pipeline.resources import PostgresResource
from billing_pipeline.resources.notify import NotifyResource
from billing_pipeline.resources.stripe import StripeResource
from billing_pipeline.ingestion.assets import MACHINE_RENTAL_HOURS, METRIC_CONTAINER_HOURS, METRIC_HOURS
from billing_pipeline.transform.assets import billing_dbt_models
from billing_pipeline.transform.defs import dbt_after_ingestion_sensor, dbt_hourly_job
from billing_pipeline.transform.resources import dbt_resource
from tests.support.payments import create_priced_usage_mart, replace_priced_usage
from tests.support.platform import create_accounts

DEFS = dg.Definitions(assets=[billing_dbt_models],
                      jobs=[credit_usage_job, balance_alert_job, auto_topup_job, dbt_hourly_job],
                      sensors=[credit_usage_sensor, balance_alert_sensor, auto_topup_sensor,
                               dbt_after_ingestion_sensor],
                      resources={"postgres": PostgresResource(database_url="postgresql://unused"),
                                 "stripe": StripeResource(), "notify": NotifyResource(), "dbt": dbt_resource()})
PRICED_USAGE = get_asset_key_for_model([billing_dbt_models], "fct_priced_usage")
BALANCES = get_asset_key_for_model([billing_dbt_models], "fct_account_balances")


@pytest.fixture
def instance():
    with dg.DagsterInstance.ephemeral() as inst:
        yield inst


class Ticker:
    """Evaluates a sensor tick after tick, carrying its cursor as the daemon does."""

    def __init__(self, sensor, instance):
        self.sensor, self.instance, self.cursor = sensor, instance, None

    def tick(self):
        context = dg.build_sensor_context(instance=self.instance, cursor=self.cursor, definitions=DEFS)
        result = self.sensor.evaluate_tick(context)
        self.cursor = result.cursor
        return result


def materialize(instance, key, partition=None):
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition=partition))


def test_sensors_are_on_by_default_and_target_their_jobs():
    assert credit_usage_sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert balance_alert_sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert auto_topup_sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert credit_usage_sensor.job_name == "credit_usage_job"
    assert balance_alert_sensor.job_name == "balance_alert_job"
    assert auto_topup_sensor.job_name == "auto_topup_job"
    assert PRICED_USAGE == dg.AssetKey(["analytics", "fct_priced_usage"])


def test_credit_usage_sensor_one_run_per_new_hour_materialisation(instance):
    ticker = Ticker(credit_usage_sensor, instance)
    first = ticker.tick()
    assert first.run_requests == [] and first.skip_message and "no new materialization" in first.skip_message

    materialize(instance, PRICED_USAGE, "2026-11-24-10:00")
    launched = ticker.tick()
    assert [(r.partition_key, r.run_key.rsplit(":", 1)[0]) for r in launched.run_requests] == [
        ("2026-11-24-10:00", "credit_usage_sensor:2026-11-24-10:00")]
    again = ticker.tick()
    assert again.run_requests == [] and again.skip_message

    # A re-materialised hour is settled again (its difference), under a new run key; two hours
    # materialised between ticks give one run each.
    materialize(instance, PRICED_USAGE, "2026-11-24-10:00")
    materialize(instance, PRICED_USAGE, "2026-11-24-11:00")
    materialize(instance, BALANCES, "2026-11-24-11:00")  # not watched by this sensor
    both = ticker.tick()
    assert sorted(r.partition_key for r in both.run_requests) == ["2026-11-24-10:00", "2026-11-24-11:00"]
    keys = {r.run_key for r in launched.run_requests + both.run_requests}
    assert len(keys) == 3
    assert ticker.tick().run_requests == []

    # The same tick evaluated twice (a daemon replay) asks for the same run keys, which Dagster launches once.
    replay_cursor = ticker.cursor
    materialize(instance, PRICED_USAGE, "2026-11-24-12:00")
    r1 = dg.build_sensor_context(instance=instance, cursor=replay_cursor, definitions=DEFS)
    r2 = dg.build_sensor_context(instance=instance, cursor=replay_cursor, definitions=DEFS)
    assert [r.run_key for r in credit_usage_sensor.evaluate_tick(r1).run_requests] == \
        [r.run_key for r in credit_usage_sensor.evaluate_tick(r2).run_requests]


@pytest.mark.parametrize("sensor", [balance_alert_sensor, auto_topup_sensor], ids=lambda s: s.name)
def test_alert_and_topup_sensors_run_once_per_ledger_or_balances_change(instance, sensor):
    ticker = Ticker(sensor, instance)
    assert ticker.tick().run_requests == []
    materialize(instance, LEDGER_ASSET_KEY)
    first = ticker.tick()
    assert len(first.run_requests) == 1 and first.run_requests[0].partition_key is None
    assert ticker.tick().run_requests == []
    materialize(instance, BALANCES, "2026-11-24-10:00")
    second = ticker.tick()
    assert len(second.run_requests) == 1 and second.run_requests[0].run_key != first.run_requests[0].run_key
    skipped = ticker.tick()
    assert skipped.run_requests == [] and skipped.skip_message


def test_deduction_run_reports_the_ledger_change_that_triggers_alerts_and_topups(db_url, instance):
    create_accounts(db_url, "acme")
    create_priced_usage_mart(db_url)
    hour = datetime(2026, 11, 24, 10, tzinfo=timezone.utc)
    replace_priced_usage(db_url, hour, [("acme", "workload_consumption", "cpu", "1.25")])
    materialize(instance, PRICED_USAGE, "2026-11-24-10:00")
    [request] = Ticker(credit_usage_sensor, instance).tick().run_requests
    alerts, topups = Ticker(balance_alert_sensor, instance), Ticker(auto_topup_sensor, instance)
    assert alerts.tick().run_requests == [] and topups.tick().run_requests == []

    resources = {"postgres": PostgresResource(database_url=db_url)}
    result = credit_usage_job.execute_in_process(partition_key=request.partition_key, instance=instance,
                                                 resources=resources, tags=request.tags)
    assert result.success
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT amount FROM billing.credit_transactions").fetchall() == [(Decimal("-1.25"),)]
    assert len(alerts.tick().run_requests) == 1 and len(topups.tick().run_requests) == 1
    # Settling the same hour again posts nothing and reports no ledger change: nothing more launches.
    assert credit_usage_job.execute_in_process(partition_key=request.partition_key, instance=instance,
                                               resources=resources).success
    assert alerts.tick().run_requests == [] and topups.tick().run_requests == []
    assert balance_alert_job.name == "balance_alert_job" and auto_topup_job.name == "auto_topup_job"


def test_dbt_follows_ingestion_once_per_ingested_hour(instance):
    assert dbt_after_ingestion_sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert dbt_after_ingestion_sensor.job_name == "dbt_hourly_job"
    ticker = Ticker(dbt_after_ingestion_sensor, instance)
    assert ticker.tick().skip_message

    # One ingestion run writes several tables of an hour: dbt runs once for that hour.
    materialize(instance, METRIC_CONTAINER_HOURS, "2026-11-24-10:00")
    materialize(instance, METRIC_HOURS, "2026-11-24-10:00")
    materialize(instance, MACHINE_RENTAL_HOURS, "2026-11-24-10:00")
    materialize(instance, MACHINE_RENTAL_HOURS, "2026-11-24-09:00")  # a corrected rental hour
    launched = ticker.tick()
    assert sorted(r.partition_key for r in launched.run_requests) == ["2026-11-24-09:00", "2026-11-24-10:00"]
    assert len({r.run_key for r in launched.run_requests}) == 2
    assert ticker.tick().skip_message  # nothing new: nothing launched twice
