"""Ingestion against a real Prometheus serving one synthetic cluster (tests/support/prometheus.py).

The module backfills the cluster once, materialises 24 hour partitions through Dagster, and each
test asserts one scenario's figures. Expected values follow from the scenario description; the
only tolerance is increase()'s extrapolation at the window edges.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import dagster as dg
import pytest

from billing_pipeline.core.clock import CLOCK_TAG
from billing_pipeline.db.connection import connect
from billing_pipeline.ingestion.assets import machine_rentals, prometheus_metric_hours
from billing_pipeline.resources.postgres import PostgresResource
from billing_pipeline.resources.prometheus import PrometheusResource
from devkit.synthetic import write_platform_rows
from tests.support.prometheus import GAP_HOUR, SCENARIO_HOUR, T0, scenario_prometheus

pytestmark = pytest.mark.prometheus

H = timedelta(hours=1)
CLOCK = T0 + 30 * H  # every ingested hour is over
TINY = Decimal("0.000001")


def pkey(hour) -> str:
    return hour.strftime("%Y-%m-%d-%H:%M")


def materialize_hour(url: str, prom_url: str, hour, clock=CLOCK, instance=None):
    return dg.materialize(
        [prometheus_metric_hours, machine_rentals],
        partition_key=pkey(hour),
        resources={"postgres": PostgresResource(database_url=url), "prometheus": PrometheusResource(url=prom_url)},
        tags={CLOCK_TAG: clock.isoformat()},
        instance=instance,
        raise_on_error=False,
    )


SNAPSHOT_QUERIES = {
    "containers": "SELECT * FROM billing.metric_container_hours ORDER BY hour, namespace, pod, container",
    "network": "SELECT * FROM billing.metric_pod_network_hours ORDER BY hour, namespace, pod",
    "volumes": "SELECT * FROM billing.metric_volume_hours ORDER BY hour, namespace, persistentvolumeclaim",
    "hours": "SELECT hour, complete, problems, prometheus_url, series FROM billing.metric_hours ORDER BY hour",
    "rentals": "SELECT * FROM billing.machine_rental_hours ORDER BY hour, machine_usage_id",
    "quarantine": "SELECT source_table, source_id, reason, row_data, resolved_at FROM billing.quarantined_rows ORDER BY id",
}


def snapshot(url: str) -> dict:
    with connect(url) as conn:
        return {name: conn.execute(q).fetchall() for name, q in SNAPSHOT_QUERIES.items()}


@pytest.fixture(scope="module")
def ingested(databases, scenario_prometheus):
    """24 hours (T0 .. T0+23h) ingested through Dagster into one database."""
    url = databases.new()
    with connect(url) as conn:
        write_platform_rows(conn, scenario_prometheus.cluster)
    instance = dg.DagsterInstance.ephemeral()
    results = {}
    for i in range(24):
        hour = T0 + i * H
        result = materialize_hour(url, scenario_prometheus.url, hour, instance=instance)
        assert result.success, f"hour {hour} failed"
        results[hour] = result
    return {"url": url, "results": results, "prom": scenario_prometheus, "instance": instance}


def container(url, pod, container_name, hour=SCENARIO_HOUR) -> dict:
    with connect(url) as conn:
        cur = conn.execute(
            "SELECT * FROM billing.metric_container_hours WHERE hour = %s AND pod = %s AND container = %s",
            (hour, pod, container_name),
        )
        row = cur.fetchone()
        assert row is not None, f"no row for {pod}/{container_name} at {hour}"
        return dict(zip([c.name for c in cur.description], row))


def near(value: Decimal, expected: str, tolerance: Decimal = TINY) -> bool:
    return abs(value - Decimal(expected)) <= tolerance


def test_steady_half_core_for_a_full_hour(ingested):
    row = container(ingested["url"], "web-steady", "app")
    assert row["present_minutes"] == 60
    assert near(row["cpu_usage_core_hours"], "0.5")
    assert row["cpu_request_core_hours"] == Decimal("1")
    assert row["memory_usage_gib_hours"] == Decimal("1")
    assert row["memory_request_gib_hours"] == Decimal("2")
    assert row["gpu_request_hours"] == 0
    assert (row["node"], row["deployment_id"], row["account_id"], row["attribution"]) == (
        "node-a",
        "dep-web",
        "acct-alpha",
        "label",
    )


def test_pod_started_at_minute_30_bills_30_minutes(ingested):
    row = container(ingested["url"], "web-late", "app")
    assert row["present_minutes"] == 30
    assert near(row["cpu_usage_core_hours"], "0.25")
    assert row["cpu_request_core_hours"] == Decimal("0.5")
    assert row["memory_usage_gib_hours"] == Decimal("0.5")
    assert row["memory_request_gib_hours"] == Decimal("1")
    # the hour before, it did not exist at all
    with connect(ingested["url"]) as conn:
        assert (
            conn.execute(
                "SELECT count(*) FROM billing.metric_container_hours WHERE pod = 'web-late' AND hour = %s", (T0,)
            ).fetchone()[0]
            == 0
        )


def test_counter_reset_on_restart_mid_hour(ingested):
    row = container(ingested["url"], "web-restart", "app")
    assert row["present_minutes"] == 60
    assert near(row["cpu_usage_core_hours"], "0.5")


def test_pod_stopping_at_minute_45(ingested):
    row = container(ingested["url"], "web-early-stop", "app")
    assert row["present_minutes"] == 45
    assert row["memory_usage_gib_hours"] == Decimal("0.75")
    assert row["cpu_request_core_hours"] == Decimal("0.75")
    # increase() extrapolates half a sample interval past the last sample: at most 1 minute off
    assert Decimal("0.375") - Decimal(0.5 / 60) <= row["cpu_usage_core_hours"] <= Decimal("0.375")


def test_pod_without_label_attributed_through_owner_chain(ingested):
    row = container(ingested["url"], "legacy-api-7d9f-abcde", "api")
    assert (row["deployment_id"], row["account_id"], row["attribution"]) == ("dep-legacy", "acct-beta", "owner_chain")
    assert "legacy-api-7d9f" in row["attribution_note"]
    assert near(row["cpu_usage_core_hours"], "0.25")


def test_pod_of_unknown_deployment_kept_unattributed(ingested):
    ghost = container(ingested["url"], "ghost-1", "main")
    phantom = container(ingested["url"], "phantom-1", "main")
    for row, cpu in ((ghost, "0.2"), (phantom, "0.1")):
        assert (row["deployment_id"], row["account_id"], row["attribution"]) == (None, None, "unattributed")
        assert near(row["cpu_usage_core_hours"], cpu)
        assert row["memory_usage_gib_hours"] == Decimal("1")
    assert "matches no row of billing.deployments" in ghost["attribution_note"]
    assert "dep-phantom names no row" in phantom["attribution_note"]


def test_ten_gib_pvc(ingested):
    with connect(ingested["url"]) as conn:
        rows = conn.execute(
            "SELECT persistentvolumeclaim, deployment_id, account_id, attribution, requested_bytes, storage_gib_hours "
            "FROM billing.metric_volume_hours WHERE hour = %s ORDER BY 1",
            (SCENARIO_HOUR,),
        ).fetchall()
    assert rows == [
        ("data-web", "dep-web", "acct-alpha", "label", Decimal(10 * 2**30), Decimal("10")),
        ("scratch", None, None, "unattributed", Decimal(5 * 2**30), Decimal("5")),
    ]


def test_gpu_pod(ingested):
    row = container(ingested["url"], "trainer-0", "train")
    assert row["gpu_request_hours"] == Decimal("1")
    assert near(row["cpu_usage_core_hours"], "2")
    assert row["memory_usage_gib_hours"] == Decimal("8")
    assert row["node"] == "gpu-node"


def test_egress(ingested):
    with connect(ingested["url"]) as conn:
        rows = dict(
            conn.execute(
                "SELECT pod, egress_gib FROM billing.metric_pod_network_hours WHERE hour = %s", (SCENARIO_HOUR,)
            ).fetchall()
        )
    assert near(rows.pop("web-steady"), str(Decimal(100 * 60) / 1024))  # 100 MiB a minute = 5.859375 GiB
    assert set(rows.values()) == {Decimal(0)}


def test_pause_and_pod_cgroup_series_are_not_containers(ingested):
    with connect(ingested["url"]) as conn:
        containers = conn.execute(
            "SELECT pod, container FROM billing.metric_container_hours WHERE hour = %s ORDER BY 1, 2", (SCENARIO_HOUR,)
        ).fetchall()
    assert ("web-sidecar", "app") in containers and ("web-sidecar", "proxy") in containers
    assert not [c for c in containers if c[1] in ("", "POD")]
    assert len(containers) == 10


def test_rental_starting_and_ending_mid_hour(ingested):
    with connect(ingested["url"]) as conn:
        rows = conn.execute(
            "SELECT hour, rented_seconds, machine_hours, is_ongoing, account_id, node_name, machine_type "
            "FROM billing.machine_rental_hours WHERE machine_usage_id = 'rent-mid'"
        ).fetchall()
    assert len(rows) == 1
    hour, seconds, machine_hours, ongoing, account, node, machine_type = rows[0]
    assert hour == SCENARIO_HOUR and seconds == Decimal(1470) and not ongoing  # 01:15:30 - 01:40:00
    assert abs(machine_hours - Decimal(1470) / Decimal(3600)) < Decimal("1e-18")
    assert (account, node, machine_type) == ("acct-alpha", "node-a", "cpu-medium")


def test_ongoing_rental_and_rental_across_hours(ingested):
    with connect(ingested["url"]) as conn:
        ongoing = conn.execute(
            "SELECT count(*), min(rented_seconds), max(rented_seconds), bool_and(is_ongoing) "
            "FROM billing.machine_rental_hours WHERE machine_usage_id = 'rent-ongoing'"
        ).fetchone()
        multi = conn.execute(
            "SELECT hour, rented_seconds FROM billing.machine_rental_hours WHERE machine_usage_id = 'rent-multi' "
            "ORDER BY hour"
        ).fetchall()
    assert ongoing == (24, Decimal(3600), Decimal(3600), True)
    assert multi == [
        (T0, Decimal(1800)),
        (T0 + H, Decimal(3600)),
        (T0 + 2 * H, Decimal(3600)),
        (T0 + 3 * H, Decimal(600)),
    ]


def test_bad_rentals_quarantined_with_reasons_never_sliced(ingested):
    with connect(ingested["url"]) as conn:
        quarantined = dict(
            conn.execute(
                "SELECT source_id, reason FROM billing.quarantined_rows WHERE source_table = 'machine_usages' "
                "AND resolved_at IS NULL"
            ).fetchall()
        )
        sliced = {r[0] for r in conn.execute("SELECT DISTINCT machine_usage_id FROM billing.machine_rental_hours")}
    assert set(quarantined) == {"rent-bad-dates", "rent-bad-account", "rent-null-node"}
    assert "ended_at is before started_at" in quarantined["rent-bad-dates"]
    assert "no row of billing.accounts" in quarantined["rent-bad-account"]
    assert "node_name is null" in quarantined["rent-null-node"]
    assert sliced == {"rent-mid", "rent-ongoing", "rent-multi"}


def test_completeness_flags_only_the_hour_with_a_scrape_gap(ingested):
    with connect(ingested["url"]) as conn:
        hours = conn.execute("SELECT hour, complete, problems FROM billing.metric_hours ORDER BY hour").fetchall()
    assert [h for h, _, _ in hours] == [T0 + i * H for i in range(24)]
    incomplete = [(h, p) for h, c, p in hours if not c]
    assert [h for h, _ in incomplete] == [GAP_HOUR]
    problems = incomplete[0][1]
    assert len(problems) == 2 and all("minutes 10-13" in p and "scrape gap" in p for p in problems)


def test_asset_checks_report_completeness_unattributed_share_and_quarantine(ingested):
    def checks(hour):
        return {e.check_name: e.passed for e in ingested["results"][hour].get_asset_check_evaluations()}

    assert checks(SCENARIO_HOUR) == {
        "hour_complete": True,
        "unattributed_share": False,  # ghost + phantom: 0.3 of 4.9 cores
        "no_quarantined_rentals": False,
    }
    assert checks(GAP_HOUR)["hour_complete"] is False


def test_rematerialising_an_hour_after_24_changes_nothing(ingested):
    before = snapshot(ingested["url"])
    assert len(before["containers"]) > 200 and len(before["rentals"]) == 24 + 4 + 1
    for _ in range(2):
        assert materialize_hour(ingested["url"], ingested["prom"].url, SCENARIO_HOUR).success
        assert snapshot(ingested["url"]) == before
