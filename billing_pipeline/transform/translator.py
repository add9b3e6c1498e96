"""How dbt nodes appear in Dagster: one group per layer, so the asset graph reads
ingestion -> dbt_staging -> dbt_intermediate -> dbt_marts."""

from __future__ import annotations

from typing import Any, Mapping

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtProject

LAYER_GROUPS = {"staging": "dbt_staging", "intermediate": "dbt_intermediate", "marts": "dbt_marts"}


def layer_group(fqn: list[str]) -> str | None:
    """The asset group of a model from its fqn (``[project, layer, ..., model]``)."""
    return LAYER_GROUPS.get(fqn[1]) if len(fqn) > 2 else None


class BillingDbtTranslator(DagsterDbtTranslator):
    """Groups models by layer; sources keep the asset keys their ``meta.dagster`` names."""

    def get_asset_spec(
        self, manifest: Mapping[str, Any], unique_id: str, project: DbtProject | None
    ) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        props = self.get_resource_props(manifest, unique_id)
        if props.get("resource_type") != "model":
            return spec
        group = layer_group(list(props.get("fqn", [])))
        return spec.replace_attributes(group_name=group) if group else spec
