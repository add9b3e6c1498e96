"""No run's cost grows with the install's age through Dagster's partition bookkeeping.

An unpartitioned asset (the lifecycle, top-ups, alerts, grant expiry) that reads an hourly one
through Dagster's default mapping (every hour) makes each of its steps list every hourly partition
since the first billable hour to version its input: 8,760 more a year, paid by every run
(``core.partitions.latest_hour_of``). The graph must draw those edges to the latest hour.
"""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg

from billing_pipeline.core.partitions import latest_hour_of
from billing_pipeline.definitions import defs


def hourly_edges_of_unpartitioned_steps(graph) -> dict[tuple[str, str], str]:
    """(downstream, upstream) -> mapping name, for every materializable unpartitioned asset that
    reads a time-partitioned asset."""
    edges = {}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if node.partitions_def is not None or not node.is_materializable:
            continue
        for parent in node.parent_keys:
            if isinstance(graph.get(parent).partitions_def, dg.TimeWindowPartitionsDefinition):
                mapping = graph.get_partition_mapping(key, parent)
                edges[(key.to_user_string(), parent.to_user_string())] = type(mapping).__name__
    return edges


def test_unpartitioned_steps_read_hourly_assets_at_their_latest_hour():
    edges = hourly_edges_of_unpartitioned_steps(defs.resolve_asset_graph())
    # The actions and alerts read the settled ledger; if none did, this test would check nothing.
    assert ("lifecycle/account_lifecycle", "ledger/credit_transactions") in edges
    assert ("alerts/balance_alerts", "analytics/fct_account_balances") in edges
    every_hour = {edge: name for edge, name in edges.items() if name != "LastPartitionMapping"}
    assert not every_hour, f"use core.partitions.latest_hour_of for these edges: {every_hour}"


def test_latest_hour_of_maps_to_one_partition_however_old_the_install():
    """The mapping's upstream subset is one hour, not the install's whole history (a start years
    before the clock)."""
    hours = dg.HourlyPartitionsDefinition(start_date="2020-01-01-00:00", timezone="UTC")
    mapping = latest_hour_of(dg.AssetKey("x")).partition_mapping
    now = datetime(2026, 12, 6, 13, 30, tzinfo=UTC)
    result = mapping.get_upstream_mapped_partitions_result_for_partitions(
        None, None, hours, current_time=now, dynamic_partitions_store=None
    )
    assert list(result.partitions_subset.get_partition_keys()) == ["2026-12-06-12:00"]
