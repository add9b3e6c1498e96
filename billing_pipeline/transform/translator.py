"""How dbt nodes appear in Dagster: one group per layer, so the asset graph reads
ingestion -> dbt_staging -> dbt_intermediate -> dbt_marts; every model owned by the billing team
and described (the model's own dbt description, else what its layer is for)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtProject

from billing_pipeline.core.ownership import BILLING_OWNER

LAYER_GROUPS = {"staging": "dbt_staging", "intermediate": "dbt_intermediate", "marts": "dbt_marts"}

# What each layer is for, for a model whose YAML has no description yet.
LAYER_DESCRIPTIONS = {
    "staging": "Staging view over {source}: renames and types the columns, nothing else.",
    "intermediate": "Intermediate step of pricing, proration or attribution ({name}).",
    "marts": "Mart {name}, queried by analysts and the billing jobs (contract enforced).",
}


def layer_group(fqn: list[str]) -> str | None:
    """The asset group of a model from its fqn (``[project, layer, ..., model]``)."""
    return LAYER_GROUPS.get(fqn[1]) if len(fqn) > 2 else None


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
    """Groups models by layer, owns and describes them; sources keep the asset keys their
    ``meta.dagster`` names (their owners are set where those assets are defined)."""

    def get_asset_spec(self, manifest: Mapping[str, Any], unique_id: str, project: DbtProject | None) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        props = self.get_resource_props(manifest, unique_id)
        if props.get("resource_type") != "model":
            return spec
        group = layer_group(list(props.get("fqn", [])))
        spec = spec.replace_attributes(owners=[BILLING_OWNER], description=model_description(props))
        return spec.replace_attributes(group_name=group) if group else spec
