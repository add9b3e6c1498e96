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


def every_model() -> dict[str, dict]:
    manifest = json.loads(ensure_manifest().read_text())
    return {node["name"]: node for node in manifest["nodes"].values() if node["resource_type"] == "model"}


def test_every_model_of_every_layer_documents_every_column_it_lists():
    """Staging and intermediate too: each model has a description and lists its columns, each
    with a description (that the list is every column of the built view is checked against the
    database in tests/integration/test_dbt_models_documented.py)."""
    models = every_model()
    layers = {node["original_file_path"].split("/")[1] for node in models.values()}
    assert {"staging", "intermediate", "marts"} <= layers
    problems = []
    for name, node in sorted(models.items()):
        if not (node.get("description") or "").strip():
            problems.append(f"{name}: no model description")
        if not node["columns"]:
            problems.append(f"{name}: no columns listed in its YAML")
        problems += [
            f"{name}.{column}: no description in the YAML"
            for column, spec in node["columns"].items()
            if not (spec.get("description") or "").strip()
        ]
    assert problems == [], "\n".join(problems)


def test_exposures_name_the_invoice_explain_and_the_jobs():
    manifest = json.loads(ensure_manifest().read_text())
    exposures = {e["name"]: e for e in manifest["exposures"].values()}
    assert {"invoice_document", "billing_explain", "hourly_billing_job", "month_close_job"} <= set(exposures)
    models = every_model()
    for name, exposure in exposures.items():
        assert exposure["description"].strip() and exposure["owner"].get("name"), name
        depends = exposure["depends_on"]["nodes"]
        assert depends, f"{name} depends on no model"
        assert any(node.startswith("model.") for node in depends), (name, depends)
        assert all(node.split(".")[-1] in models for node in depends if node.startswith("model.")), (name, depends)
    assert "model.satusky_billing.fct_invoice_lines" in exposures["invoice_document"]["depends_on"]["nodes"]
    assert "model.satusky_billing.fct_usage_reconciliation" in exposures["billing_explain"]["depends_on"]["nodes"]
