"""README promise "marts … with enforced contracts, every column documented": every model under
dbt_project/models/marts/ enforces its contract (so dbt refuses to build it unless its YAML lists
exactly the table's columns, with their types) and every listed column has a description. Read from
the manifest dbt parses from the YAML (re-parsed when a model or YAML file is newer)."""

from __future__ import annotations

import json

from billing_pipeline.transform.project import ensure_manifest


def mart_models() -> dict[str, dict]:
    manifest = json.loads(ensure_manifest().read_text())
    return {
        node["name"]: node
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model" and node["original_file_path"].startswith("models/marts/")
    }


def test_every_mart_enforces_its_contract_and_documents_every_column():
    marts = mart_models()
    assert {"fct_priced_usage", "fct_usage_charges", "fct_account_balances", "fct_invoices"} <= set(marts)
    problems = []
    for name, node in sorted(marts.items()):
        if not node["config"].get("contract", {}).get("enforced"):
            problems.append(f"{name}: contract not enforced (its YAML need not list every column)")
        if not node["columns"]:
            problems.append(f"{name}: no columns listed in its YAML")
        problems += [
            f"{name}.{column}: no description in the YAML"
            for column, spec in node["columns"].items()
            if not (spec.get("description") or "").strip()
        ]
        if not (node.get("description") or "").strip():
            problems.append(f"{name}: no model description")
    assert problems == [], "\n".join(problems)
