"""Every column of every dbt model, as built, is listed in the model's YAML with a description:
staging and intermediate as well as the marts (whose enforced contracts already guarantee the
list). `dbt run` builds the project on an empty, migrated database; the columns of the built
relations (information_schema) must be exactly those the manifest lists, in any order."""

from __future__ import annotations

import json

from tests.support import dbt as d


def test_every_built_column_is_documented(db_url, tmp_path):
    d.run_dbt(db_url, ["run"], tmp_path)
    manifest = json.loads((tmp_path / "target" / "manifest.json").read_text())
    models = {n["name"]: n for n in manifest["nodes"].values() if n["resource_type"] == "model"}
    built: dict[str, list[str]] = {}
    for _schema, table, column in d.query(
        db_url,
        "SELECT table_schema, table_name, column_name FROM information_schema.columns "
        "WHERE table_schema IN ('analytics', 'analytics_staging', 'analytics_intermediate') "
        "ORDER BY table_schema, table_name, ordinal_position",
    ):
        if table in models:
            built.setdefault(table, []).append(column)
    layers = {models[name]["original_file_path"].split("/")[1] for name in built}
    assert {"staging", "intermediate", "marts"} <= layers and len(built) == len(models), sorted(
        set(models) - set(built)
    )
    problems = []
    for name, columns in sorted(built.items()):
        listed = models[name]["columns"]
        problems += [f"{name}.{c}: built but not in the YAML" for c in columns if c not in listed]
        problems += [f"{name}.{c}: in the YAML but not built" for c in listed if c not in columns]
        problems += [
            f"{name}.{c}: no description" for c, spec in listed.items() if not (spec.get("description") or "").strip()
        ]
    assert problems == [], "\n".join(problems)
