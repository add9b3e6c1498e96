"""The sources observed: each platform table's rows and last change, and Prometheus's newest
sample, as observations on the external assets (what the UI shows as their freshness)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import psycopg

from billing_pipeline.core.asset_keys import PROMETHEUS
from billing_pipeline.ingestion.platform import platform_key
from billing_pipeline.ingestion.sources import observe_sources_job, platform_tables, prometheus_source
from billing_pipeline.resources import PostgresResource
from billing_pipeline.resources.prometheus import PrometheusResource
from tests.support.prometheus import HOURS, T0, scenario_prometheus

NEWEST_SAMPLE = T0 + timedelta(hours=HOURS) - timedelta(minutes=1)  # the cluster's last scraped minute


def _observe(db_url: str, prometheus_url: str) -> dg.DagsterInstance:
    instance = dg.DagsterInstance.ephemeral()
    defs = dg.Definitions(
        assets=[platform_tables, prometheus_source],
        jobs=[observe_sources_job],
        resources={
            "postgres": PostgresResource(database_url=db_url),
            "prometheus": PrometheusResource(url=prometheus_url),
        },
    )
    assert defs.resolve_job_def("observe_sources_job").execute_in_process(instance=instance).success
    return instance


def _latest(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict:
    (record,) = instance.fetch_observations(key, limit=1).records
    return {name: value.value for name, value in record.asset_observation.metadata.items()}


def test_platform_tables_report_rows_and_their_last_change(db_url, scenario_prometheus, frozen_clock):
    frozen_clock.set(T0 + timedelta(hours=HOURS, minutes=1))
    created = datetime(2026, 11, 2, 9, tzinfo=UTC)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO billing.accounts (id, name, created_at) VALUES ('a', 'A', %s), ('b', 'B', %s)",
            (created, created + timedelta(hours=5)),
        )
        conn.execute(
            "INSERT INTO billing.deployments (id, account_id, namespace, name, created_at, deleted_at) "
            "VALUES ('d1', 'a', 'ns', 'web', %s, %s)",
            (created, created + timedelta(days=3)),
        )
        conn.execute(
            "INSERT INTO billing.machine_usages (id, account_id, started_at, updated_at) VALUES ('m1', 'a', %s, %s)",
            (created, created + timedelta(days=1, minutes=7)),
        )
    instance = _observe(db_url, scenario_prometheus.url)

    assert _latest(instance, platform_key("accounts")) == {
        "dagster/row_count": 2,
        "dagster/last_updated_timestamp": (created + timedelta(hours=5)).timestamp(),
    }
    assert (
        _latest(instance, platform_key("deployments"))["dagster/last_updated_timestamp"]
        == (created + timedelta(days=3)).timestamp()
    )
    assert _latest(instance, platform_key("machine_usages")) == {
        "dagster/row_count": 1,
        "dagster/last_updated_timestamp": (created + timedelta(days=1, minutes=7)).timestamp(),
    }
    assert _latest(instance, platform_key("domains")) == {"dagster/row_count": 0}  # no timestamp column
    assert _latest(instance, platform_key("pricing_configs")) == {"dagster/row_count": 0}
    # Prometheus, scraped a minute ago: its newest sample is the last scraped minute.
    assert _latest(instance, PROMETHEUS) == {
        "url": scenario_prometheus.url,
        "dagster/last_updated_timestamp": NEWEST_SAMPLE.timestamp(),
    }


def test_a_prometheus_without_live_scrapes_reports_its_newest_backfilled_sample(
    db_url,
    scenario_prometheus,
    frozen_clock,
):
    frozen_clock.set(T0 + timedelta(days=12))  # the demo's case: backfilled data, days old
    assert _latest(_observe(db_url, scenario_prometheus.url), PROMETHEUS)["dagster/last_updated_timestamp"] == (
        NEWEST_SAMPLE.timestamp()
    )
    frozen_clock.set(T0 + timedelta(days=40))  # beyond the lookback: said, not guessed
    assert _latest(_observe(db_url, scenario_prometheus.url), PROMETHEUS)["newest_sample"] == (
        "none of container_cpu_usage_seconds_total in the last 31 days"
    )
