"""The asset groups read as one money path, left to right, as the UI's default lineage draws them.

The group graph (an edge where an asset of one group reads an asset of another) is computed from
the Definitions: it must be acyclic and follow the path's order, or the UI draws later stages
to the left of earlier ones. And no hourly asset may read a monthly one: the hourly job would
then ask for a monthly partition ("Are you sure?", "varying backfill policies").
"""

from __future__ import annotations

import dagster as dg

from billing_pipeline.definitions import defs
from billing_pipeline.transform.translator import stage_group
from tests.support.asset_groups import MONEY_PATH

PATH = MONEY_PATH


def group_edges(graph) -> set[tuple[str, str]]:
    edges = set()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        for parent in node.parent_keys:
            upstream = graph.get(parent).group_name
            if upstream != node.group_name:
                edges.add((upstream, node.group_name))
    return edges


def cycle_in(edges: set[tuple[str, str]]) -> list[str] | None:
    """A cycle of the directed graph, as a list of groups, or None."""
    downstream: dict[str, set[str]] = {}
    for up, down in edges:
        downstream.setdefault(up, set()).add(down)
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(group: str, path: list[str]) -> list[str] | None:
        state[group] = 1
        for nxt in sorted(downstream.get(group, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt] if nxt in path else [*path, nxt]
            if nxt not in state and (found := visit(nxt, [*path, nxt])):
                return found
        state[group] = 2
        return None

    for group in sorted(downstream):
        if group not in state and (found := visit(group, [group])):
            return found
    return None


def test_the_group_graph_is_acyclic_and_reads_left_to_right():
    graph = defs.resolve_asset_graph()
    groups = {graph.get(key).group_name for key in graph.get_all_asset_keys()}
    assert groups == set(PATH), f"groups outside the money path: {sorted(groups - set(PATH))}"
    edges = group_edges(graph)
    assert cycle_in(edges) is None, f"the groups loop: {' -> '.join(cycle_in(edges))}"
    backwards = sorted((up, down) for up, down in edges if PATH.index(up) > PATH.index(down))
    assert backwards == [], f"group edges pointing back along the path: {backwards}"
    # The stages the path promises are connected in its order (not merely not reversed).
    for up, down in [
        ("sources", "ingestion"),
        ("platform", "ingestion"),
        ("ingestion", "dbt_usage"),
        ("dbt_usage", "ledger"),
        ("ledger", "payments"),
        ("payments", "lifecycle"),
        ("lifecycle", "dbt_balances"),
        ("dbt_balances", "alerts"),
        ("ledger", "invoicing"),
        ("invoicing", "dbt_invoicing"),
    ]:
        assert (up, down) in edges, f"no edge {up} -> {down}"


def test_the_cycle_finder_finds_the_loop_the_groups_had():
    # The groups before issue 23: marts -> ledger -> staging -> marts, invoicing <-> staging.
    old = {("dbt_marts", "ledger"), ("ledger", "dbt_staging"), ("dbt_staging", "dbt_marts")}
    assert cycle_in(old) == ["dbt_marts", "ledger", "dbt_staging", "dbt_marts"]
    assert cycle_in({("invoicing", "dbt_staging"), ("dbt_staging", "invoicing")}) is not None
    assert cycle_in({("a", "b"), ("b", "c"), ("a", "c")}) is None


def _kind(partitions_def) -> str | None:
    if isinstance(partitions_def, dg.HourlyPartitionsDefinition):
        return "hourly"
    if isinstance(partitions_def, dg.MonthlyPartitionsDefinition):
        return "monthly"
    return None if partitions_def is None else repr(partitions_def)


def test_no_hourly_asset_depends_on_a_monthly_one():
    graph = defs.resolve_asset_graph()
    kinds = {key: _kind(graph.get(key).partitions_def) for key in graph.get_all_asset_keys()}
    assert set(kinds.values()) == {None, "hourly", "monthly"}
    wrong = sorted(
        f"{key.to_user_string()} <- {parent.to_user_string()}"
        for key, kind in kinds.items()
        if kind == "hourly"
        for parent in graph.get(key).parent_keys
        if kinds[parent] == "monthly"
    )
    assert wrong == []
    hourly_job = defs.resolve_job_def("hourly_billing_job")
    assert {kinds[k] for k in hourly_job.asset_layer.executable_asset_keys} == {"hourly", None}
    monthly_job = defs.resolve_job_def("monthly_invoice_job")
    assert {kinds[k] for k in monthly_job.asset_layer.executable_asset_keys} == {"monthly"}


def test_a_models_stage_follows_from_the_sources_it_reads():
    assert stage_group(frozenset({"platform", "ingestion"})) == "dbt_usage"
    assert stage_group(frozenset({"platform", "ledger"})) == "dbt_balances"
    assert stage_group(frozenset({"lifecycle"})) == "dbt_balances"
    assert stage_group(frozenset({"ledger", "invoicing"})) == "dbt_invoicing"
