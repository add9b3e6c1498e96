"""The dbt models as Dagster assets: lineage from the ingestion assets, groups per layer, and a
day of synthetic cluster data through the real ingestion and the dbt assets, with the totals of
fct_priced_usage checked against figures computed by hand from the cluster's description.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import dagster as dg
import jsonschema
import pytest

from billing_pipeline.db.connection import connect
from billing_pipeline.transform.assets import dbt_model_key, dbt_source_keys, window_env
from devkit.synthetic import (
    GIB,
    MIB,
    Account,
    Cluster,
    Container,
    Deployment,
    Pod,
    PrometheusServer,
    Pvc,
    Rental,
    build_tsdb,
    write_platform_rows,
)
from tests.support import dbt as d
from tests.support.cycle import REPO, billing, ledger_differs_from_charges
from tests.support.payments import set_balance

UTC = UTC
DAY = datetime(2025, 3, 2, tzinfo=UTC)
H = timedelta(hours=1)
D = Decimal


def test_lineage_runs_from_ingestion_through_the_layers_to_the_marts():
    from billing_pipeline.definitions import defs

    graph = defs.resolve_asset_graph()
    stg = dbt_model_key("stg_ingestion__metric_container_hours")
    sources = dbt_source_keys("ingestion")
    assert {k.to_user_string() for k in sources.values()} == {
        "ingestion/metric_container_hours",
        "ingestion/metric_pod_network_hours",
        "ingestion/metric_volume_hours",
        "ingestion/metric_hours",
        "ingestion/machine_rental_hours",
    }
    assert dg.AssetKey(["ingestion", "metric_container_hours"]) in graph.get(stg).parent_keys
    assert (
        dg.AssetKey(["ledger", "credit_transactions"])
        in graph.get(dbt_model_key("stg_ledger__credit_transactions")).parent_keys
    )
    assert (
        dg.AssetKey(["platform", "pricing_configs"])
        in graph.get(dbt_model_key("stg_platform__pricing_configs")).parent_keys
    )
    groups = {
        name: graph.get(dbt_model_key(name)).group_name
        for name in ("stg_ingestion__metric_hours", "int_workload_usage_priced", "fct_priced_usage")
    }
    assert groups == {  # one group per stage of the money path (tests/unit/test_asset_groups.py)
        "stg_ingestion__metric_hours": "dbt_usage",
        "int_workload_usage_priced": "dbt_usage",
        "fct_priced_usage": "dbt_usage",
    }
    # The ingestion asset is materialisable and upstream: Prometheus -> ingestion -> staging -> marts.
    assert graph.get(dg.AssetKey(["ingestion", "metric_container_hours"])).is_materializable
    checks = {k.name for k in graph.asset_check_keys if k.asset_key == dbt_model_key("fct_priced_usage")}
    assert "unique_fct_priced_usage_priced_usage_key" in checks
    # A singular test over several models is the check of the one its dbt meta names, not an
    # observation logged with a warning every hour.
    grant_checks = {k.name for k in graph.asset_check_keys if k.asset_key == dbt_model_key("fct_grant_balances")}
    assert "assert_balance_is_open_grants_minus_debt" in grant_checks
    assert window_env(DAY, DAY + H) == {
        "BILLING_DBT_MIN_HOUR": "2025-03-02T00:00:00+00:00",
        "BILLING_DBT_MAX_HOUR": "2025-03-02T01:00:00+00:00",
    }


def day_cluster() -> Cluster:
    """One day, constant workloads, so every hour's figure follows from the description."""
    return Cluster(
        start=DAY,
        minutes=24 * 60,
        pod_cgroup_series=False,
        accounts=(Account("acct-a", "A"), Account("acct-b", "B")),
        deployments=(Deployment("dep-a", "acct-a", "ns-a", "web"), Deployment("dep-b", "acct-b", "ns-b", "gpu")),
        pods=(
            Pod(
                "pa1",
                "dep-a",
                "shared-1",
                (Container("app", cpu_cores=0.5, cpu_request=1.0, memory_bytes=GIB, memory_request=2 * GIB),),
                egress_bytes_per_minute=64 * MIB,
            ),
            Pod(
                "pa2",
                "dep-a",
                "rented-node",
                (Container("app", cpu_cores=2.0, cpu_request=1.0, memory_bytes=4 * GIB, memory_request=GIB),),
            ),
            Pod(
                "pb1",
                "dep-b",
                "shared-1",
                (
                    Container(
                        "train",
                        cpu_cores=0.25,
                        cpu_request=0.5,
                        memory_bytes=512 * MIB,
                        memory_request=256 * MIB,
                        gpu_request=1,
                    ),
                ),
            ),
        ),
        pvcs=(Pvc("ns-a", "data-a", 10 * GIB, deployment_id="dep-a"),),
        rentals=(
            Rental(
                "rent-a",
                "acct-a",
                "m-1",
                "standard-8",
                "rented-node",
                DAY + timedelta(hours=6, minutes=20),
                DAY + timedelta(hours=18, minutes=5),
            ),
        ),
    )


def hand_computed_totals() -> dict[tuple[str, str, str], Decimal]:
    """(account, usage kind, resource) -> credits for the day, from day_cluster()'s description."""
    cpu = {h: D("0.04") if h < 12 else D("0.05") for h in range(24)}  # price change at 12:00
    covered = set(range(6, 19))  # rent-a covers rented-node in hours 06..18 (06:20-18:05)
    t = {}
    # pa1 on a shared node: cpu max(request 1, usage 0.5) = 1; memory usage 1 GiB; egress 64 MiB/min.
    t[("acct-a", "workload_consumption", "cpu")] = sum(cpu[h] * (1 + (0 if h in covered else 2)) for h in range(24))
    t[("acct-a", "workload_consumption", "memory")] = sum(
        D("0.005") * (1 + (0 if h in covered else 4)) for h in range(24)
    )
    t[("acct-a", "workload_consumption", "network_egress")] = D("0.08") * D(64 * 60 * 24) / D(1024)
    t[("acct-a", "workload_consumption", "storage")] = D("0.0002") * 10 * 24
    t[("acct-a", "machine_rental", "machine")] = D("0.90") * (D(11) + D(45) / D(60))
    # pb1: cpu max(0.5, 0.25) = 0.5; memory usage 0.5 GiB; one GPU requested.
    t[("acct-b", "workload_consumption", "cpu")] = sum(cpu[h] * D("0.5") for h in range(24))
    t[("acct-b", "workload_consumption", "memory")] = D("0.005") * D("0.5") * 24
    t[("acct-b", "workload_consumption", "gpu")] = D("1.5") * 24
    return t


@pytest.mark.prometheus
@pytest.mark.slow
def test_a_day_through_the_whole_cycle_with_billing_run(db_url, tmp_path):
    """`billing run` (the console script) runs every stage through the real Definitions on the
    instance: ingestion, dbt, settlement, top-ups, lifecycle, alerts; the figures are checked
    against hand-computed totals, the ledger against the bill, and a correction outside the next
    window is settled by that next run."""
    cluster = day_cluster()
    server = PrometheusServer(build_tsdb(cluster, tmp_path / "tsdb")).start()
    env = {
        **os.environ,
        "PROMETHEUS_URL": server.url,
        "BILLING_DATABASE_URL": db_url,
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
    }
    (tmp_path / "dagster_home").mkdir()
    try:
        with connect(db_url) as conn:
            write_platform_rows(conn, cluster)
        d.add_price(db_url, "cpu-1", "cpu", "core_hour", "0.04", basis="max_request_usage", end=DAY + 12 * H)
        d.add_price(db_url, "cpu-2", "cpu", "core_hour", "0.05", basis="max_request_usage", start=DAY + 12 * H)
        d.add_price(db_url, "mem", "memory", "gib_hour", "0.005", basis="usage")
        d.add_price(db_url, "gpu", "gpu", "gpu_hour", "1.5")
        d.add_price(db_url, "sto", "storage", "gib_hour", "0.0002")
        d.add_price(db_url, "egr", "network_egress", "gib", "0.08")
        d.add_price(db_url, "std8", "machine", "machine_hour", "0.90", machine_type="standard-8")
        for account in ("acct-a", "acct-b"):
            set_balance(db_url, account, D("100"), f"opening-{account}")

        code, out, err = billing(
            [
                "run",
                "--start",
                DAY.isoformat(),
                "--end",
                (DAY + 24 * H).isoformat(),
                "--now",
                (DAY + 25 * H).isoformat(),
            ],
            env,
        )
        assert code == 0, err
        assert "24 of 24 hours" in err  # progress on stderr, the document alone on stdout
        jsonschema.validate(out, json.loads((REPO / "docs" / "schemas" / "run.json").read_text()))
        assert [(r["job"], r["status"], r["scope"]) for r in out["runs"]] == [
            ("hourly_billing_job", "SUCCESS", "hours 2025-03-02-00:00 to 2025-03-02-23:00")
        ]
        assert out["ok"] and out["problems"] == [] and out["corrections"] == []
        assert out["metrics"]["complete"] == 24
        assert set(out["posted"]["by_account"]) == {"acct-a", "acct-b"}
        assert out["accounts_by_state"] == {"healthy": ["acct-a", "acct-b"]}
        assert out["posted"]["by_type"]["usage_deduction"]["entries"] == len(
            d.query(db_url, "SELECT 1 FROM analytics.fct_usage_charges WHERE amount <> 0")
        )

        got = {
            (a, k, r): amt
            for a, k, r, amt in d.query(
                db_url,
                """
            SELECT account_id, usage_kind, resource, sum(amount) FROM analytics.fct_priced_usage
            GROUP BY 1, 2, 3""",
            )
        }
        expected = hand_computed_totals()
        assert set(got) == set(expected)
        for key, value in expected.items():
            # Prometheus' increase() extrapolates at the window edges (2699.9999 for 2700): a few
            # micro-credits over a day at most.
            assert abs(got[key] - value) < D("0.00001"), (key, got[key], value)
        assert expected[("acct-a", "machine_rental", "machine")] == D("10.575")
        assert ledger_differs_from_charges(db_url) == []
        hours = d.query(db_url, "SELECT count(DISTINCT hour), bool_or(is_estimate) FROM analytics.fct_priced_usage")
        assert hours == [(24, False)]
        covered = d.query(
            db_url,
            """SELECT count(DISTINCT hour), sum(quantity) FROM analytics.fct_priced_usage
                                     WHERE is_covered_by_rental AND resource = 'cpu'""",
        )
        assert covered[0][0] == 13 and abs(covered[0][1] - 26) < D("0.0001")

        # The rental really ended at 08:05, not 18:05: the hours it touched are outside the next window.
        d.query(
            db_url,
            "UPDATE billing.machine_usages SET ended_at = %s, updated_at = clock_timestamp() "
            "WHERE id = 'rent-a' RETURNING 1",
            (DAY + timedelta(hours=8, minutes=5),),
        )
        code, out, err = billing(
            [
                "run",
                "--start",
                (DAY + 23 * H).isoformat(),
                "--end",
                (DAY + 24 * H).isoformat(),
                "--now",
                (DAY + 25 * H).isoformat(),
            ],
            env,
        )
        assert code == 0, err
        # Every hour the rental touched, before or after its correction (06:20-18:05 then 06:20-08:05).
        assert out["corrections"] == [f"2025-03-02-{h:02d}:00" for h in range(6, 19)]
        # One ranged run re-prices and settles the corrected hours, then the window's own run.
        assert [r["scope"] for r in out["runs"]] == [
            "hours 2025-03-02-06:00 to 2025-03-02-18:00",
            "hours 2025-03-02-23:00 to 2025-03-02-23:00",
        ]
        assert ledger_differs_from_charges(db_url) == []
        rented = d.query(
            db_url,
            """SELECT -sum(amount) FROM billing.credit_transactions
                                    WHERE account_id = 'acct-a' AND reference->>'usage_kind' = 'machine_rental'""",
        )
        assert rented == [(D("0.90") * (D(1) + D(45) / D(60)),)]  # 06:20-08:05
        assert out["posted"]["by_type"]["reversal"]["entries"] >= 10

        # Nothing left to do: a third run posts nothing.
        code, out, _ = billing(
            [
                "run",
                "--start",
                (DAY + 23 * H).isoformat(),
                "--end",
                (DAY + 24 * H).isoformat(),
                "--now",
                (DAY + 25 * H).isoformat(),
            ],
            env,
        )
        assert code == 0 and out["posted"]["entries"] == 0 and out["corrections"] == []
    finally:
        server.stop()
