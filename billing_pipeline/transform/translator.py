"""How dbt nodes appear in Dagster: one group per stage of the money path, so the groups form an
acyclic graph read left to right (tests/unit/test_asset_groups.py):

    sources, platform -> ingestion -> dbt_usage -> ledger -> payments, lifecycle -> dbt_balances
        -> alerts -> invoicing -> dbt_invoicing

A model's stage follows from the sources it reads, directly or through other models: what reads
the month-end tables (``source:invoicing``) is ``dbt_invoicing``, built by the monthly job after the
invoices; what reads the settled ledger or the lifecycle is ``dbt_balances``, built by the hourly
job after them; everything else (staging, pricing, reconciliation, usage charges) is
``dbt_usage``, which the settlement reads. The layer (staging, intermediate, marts) stays in
the asset key's prefix. Every model is owned by the billing team and described (the model's own
dbt description, else what its layer is for)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtProject

from billing_pipeline.core.ownership import BILLING_OWNER

USAGE_GROUP, BALANCES_GROUP, INVOICING_GROUP = "dbt_usage", "dbt_balances", "dbt_invoicing"
# The dbt sources whose readers run after the settlement (hourly), or after the invoices (monthly).
AFTER_LEDGER_SOURCES = frozenset({"ledger", "lifecycle"})
AFTER_INVOICES_SOURCES = frozenset({"invoicing"})
# The same, as dbt selections: the models downstream of those sources (transform/assets.py).
AFTER_LEDGER = " ".join(f"source:{name}+" for name in sorted(AFTER_LEDGER_SOURCES))
AFTER_INVOICES = " ".join(f"source:{name}+" for name in sorted(AFTER_INVOICES_SOURCES))

# What each layer is for, for a model whose YAML has no description yet.
LAYER_DESCRIPTIONS = {
    "staging": "Staging view over {source}: renames and types the columns, nothing else.",
    "intermediate": "Intermediate step of pricing, proration or attribution ({name}).",
    "marts": "Mart {name}, queried by analysts and the billing jobs (contract enforced).",
}


def upstream_sources(manifest: Mapping[str, Any], unique_id: str) -> frozenset[str]:
    """The names of the dbt sources a node reads, directly or through other nodes."""
    seen, todo, found = {unique_id}, [unique_id], set()
    while todo:
        node = manifest["nodes"].get(todo.pop()) or {}
        for parent in node.get("depends_on", {}).get("nodes", []):
            if parent.startswith("source."):
                found.add(manifest["sources"][parent]["source_name"])
            elif parent not in seen:
                seen.add(parent)
                todo.append(parent)
    return frozenset(found)


def stage_group(sources: frozenset[str]) -> str:
    """The asset group of a model that reads ``sources`` (see the module's docstring)."""
    if sources & AFTER_INVOICES_SOURCES:
        return INVOICING_GROUP
    if sources & AFTER_LEDGER_SOURCES:
        return BALANCES_GROUP
    return USAGE_GROUP


def model_description(props: Mapping[str, Any]) -> str:
    """The model's dbt description, or a sentence about its layer when it has none."""
    text = (props.get("description") or "").strip()
    if text:
        return text
    fqn = list(props.get("fqn", []))
    name = props.get("name", "")
    layer = fqn[1] if len(fqn) > 2 else ""
    source = name.removeprefix("stg_").replace("__", ".") if name.startswith("stg_") else name
    template = LAYER_DESCRIPTIONS.get(layer, "dbt model {name}.")
    return template.format(name=name, source=source)


class BillingDbtTranslator(DagsterDbtTranslator):
    """Groups models by stage, owns and describes them; sources keep the asset keys their
    ``meta.dagster`` names (their owners are set where those assets are defined)."""

    def get_asset_spec(self, manifest: Mapping[str, Any], unique_id: str, project: DbtProject | None) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        props = self.get_resource_props(manifest, unique_id)
        if props.get("resource_type") != "model":
            return spec
        group = stage_group(upstream_sources(manifest, unique_id))
        return spec.replace_attributes(owners=[BILLING_OWNER], description=model_description(props), group_name=group)
