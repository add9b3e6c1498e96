"""The whole asset graph as a reviewed snapshot (as dagster-open-platform keeps it in
``dagster_open_platform_tests/__snapshots__/``): every asset key with its dependencies, group,
owners, kinds and partitioning, and every job's selection, read from
``billing_pipeline.definitions``. Any change to the graph then shows as a diff of
``tests/unit/__snapshots__/test_asset_graph_snapshot.ambr`` in review.

After a deliberate change to the graph, update the snapshot and commit the diff with the change:

    scripts/test unit -k asset_graph_snapshot --snapshot-update

Loading the definitions needs no services, so this runs in the unit tier (no sockets).
"""

from __future__ import annotations

import dagster as dg

from billing_pipeline.definitions import defs


def _partitioning(partitions_def) -> str | None:
    """The partitioning's shape. A time window's start is left out: the hourly one comes from the
    deployment's BILLING_FIRST_HOUR, a setting rather than the graph's structure."""
    if partitions_def is None:
        return None
    if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        return (
            f"{type(partitions_def).__name__}(cron={partitions_def.cron_schedule!r}, "
            f"timezone={partitions_def.timezone!r}, fmt={partitions_def.fmt!r}, end_offset={partitions_def.end_offset})"
        )
    return repr(partitions_def)


def _selection_text(selection) -> str:
    """The selection as Dagster writes it, its `or` terms sorted: a multi-asset's keys come from a
    set, so their order in the text changes from one process to the next."""
    text = selection.to_selection_str()
    if "(" not in text and " or " in text:
        return " or ".join(sorted(text.split(" or ")))
    return text


def asset_graph() -> dict:
    """Plain, sorted data (the .ambr is deterministic whatever the definitions' order)."""
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "deps": sorted(parent.to_user_string() for parent in node.parent_keys),
            "group": node.group_name,
            "owners": sorted(node.owners),
            "kinds": sorted(node.kinds),
            "partitions": _partitioning(node.partitions_def),
            "materializable": node.is_materializable,
        }
    selections = {job.name: _selection_text(job.selection) for job in defs.jobs if hasattr(job, "selection")}
    jobs = {}
    for job in sorted(defs.resolve_all_job_defs(), key=lambda j: j.name):
        if job.name.startswith("__"):  # Dagster's implicit job over every asset
            continue
        jobs[job.name] = {
            "selection": selections.get(job.name),
            "assets": sorted(key.to_user_string() for key in job.asset_layer.executable_asset_keys),
        }
    return {"assets": assets, "jobs": jobs}


def test_the_asset_graph_matches_its_snapshot(snapshot):
    graph = asset_graph()
    assert len(graph["assets"]) > 50 and "credit_usage_job" in graph["jobs"]  # the walk found the graph
    assert graph == snapshot
