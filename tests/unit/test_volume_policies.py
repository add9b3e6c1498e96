"""One list of volume policies: the database's CHECK, the dbt staging test and the lifecycle all
take theirs from ``dbt_project.yml``'s var ``volume_policies`` (``core.volume_policies``).

No services: the migration's SQL is captured, not run (tests/integration/test_volume_policies_db.py
runs it and the dbt test on PostgreSQL).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import yaml
from jinja2.nativetypes import NativeEnvironment

from billing_pipeline.core import volume_policies
from billing_pipeline.core.errors import ConfigurationError
from billing_pipeline.core.volume_policies import DBT_PROJECT_FILE, VOLUME_POLICIES, check_sql
from billing_pipeline.lifecycle import volumes
from billing_pipeline.lifecycle.volumes import HANDLING, UnknownVolumePolicy, handling

ROOT = Path(__file__).resolve().parents[2]
VERSIONS = ROOT / "billing_pipeline/migrations/versions"
STAGING_YML = ROOT / "dbt_project/models/staging/_staging__models.yml"
RULES = ROOT / "docs/rules/lifecycle.md"


def documented_policies() -> set[str]:
    """The rows of the `volume_policy` table in docs/rules/lifecycle.md."""
    text = RULES.read_text()
    table = text[text.index("| `volume_policy` |") :].split("\n\n", 1)[0]
    return set(re.findall(r"^\| `([a-z_]+)`", table, flags=re.MULTILINE)) - {"volume_policy"}


def test_the_one_list_is_the_dbt_project_var_and_the_rules_document_each_policy():
    project = yaml.safe_load(DBT_PROJECT_FILE.read_text())
    assert tuple(project["vars"]["volume_policies"]) == VOLUME_POLICIES
    assert documented_policies() == {"delete", "retain", "snapshot"} == set(VOLUME_POLICIES)


def test_a_malformed_list_is_refused_naming_the_file(tmp_path):
    bad = tmp_path / "dbt_project.yml"
    bad.write_text("vars:\n  volume_policies: delete\n")
    with pytest.raises(ConfigurationError, match=r"dbt_project.yml: vars.volume_policies must be a YAML list"):
        volume_policies.load(bad)
    bad.write_text('vars:\n  volume_policies: ["delete", "x\'); DROP TABLE t; --"]\n')
    with pytest.raises(ConfigurationError, match="distinct lower-case names"):
        volume_policies.load(bad)


def _staging_test_values() -> object:
    """The ``values`` of the accepted_values test on stg_platform__accounts.volume_policy."""
    models = yaml.safe_load(STAGING_YML.read_text())["models"]
    (accounts,) = [m for m in models if m["name"] == "stg_platform__accounts"]
    (column,) = [c for c in accounts["columns"] if c["name"] == "volume_policy"]
    (test,) = [t["accepted_values"] for t in column["data_tests"] if "accepted_values" in t]
    return test["arguments"]["values"]


def test_the_staging_test_reads_the_project_var():
    values = _staging_test_values()
    assert values == "{{ var('volume_policies') }}"
    # Rendered as dbt renders a test's arguments (native types), it is the list itself.
    project_vars = yaml.safe_load(DBT_PROJECT_FILE.read_text())["vars"]
    rendered = NativeEnvironment().from_string(values).render(var=project_vars.__getitem__)
    assert tuple(rendered) == VOLUME_POLICIES


def _captured_upgrade(path: Path) -> str:
    """The SQL a migration's upgrade() runs, captured instead of executed."""
    spec = importlib.util.spec_from_file_location(f"migration_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    class Recorder:
        def __init__(self):
            self.statements: list[str] = []

        def execute(self, sql):
            self.statements.append(str(sql))

    module.op = Recorder()
    module.upgrade()
    return "\n".join(module.op.statements)


def test_the_newest_migration_on_volume_policy_writes_both_checks_from_the_list():
    touching = sorted(p for p in VERSIONS.glob("[0-9]*.py") if "volume_policy" in p.read_text())
    newest = touching[-1]
    assert newest.name.startswith("0012"), newest.name
    assert "check_sql(" in newest.read_text()
    sql = _captured_upgrade(newest)
    for table in ("accounts", "lifecycle_cleanups"):
        assert f"ALTER TABLE billing.{table} ADD CONSTRAINT {table}_volume_policy_check CHECK ({check_sql()})" in sql
    assert check_sql() == "volume_policy IN (" + ", ".join(f"'{p}'" for p in VOLUME_POLICIES) + ")"


def test_the_lifecycle_handles_exactly_the_listed_policies():
    assert set(HANDLING) == set(VOLUME_POLICIES)
    # Each policy does something different with the PVCs; none is another's copy.
    assert len({(h.retained, h.snapshot_first) for h in HANDLING.values()}) == len(HANDLING)
    assert [p for p, h in HANDLING.items() if h.retained] == volumes.retained_policies()
    with pytest.raises(UnknownVolumePolicy, match=r"volume policy 'archive' of account acme has no lifecycle handling"):
        handling("archive", "acme")


def test_no_second_list_of_policies_in_code_models_or_tests_of_the_data():
    """A literal sequence of two or more policy names anywhere but the one list (and the
    migrations before 0012, which are history) is a second list."""
    names = "|".join(sorted(documented_policies() | set(VOLUME_POLICIES)))
    pair = re.compile(rf"""(['"])({names})\1\s*,\s*(['"])({names})\3""")
    files = [
        *(ROOT / "billing_pipeline").rglob("*.py"),
        *(ROOT / "dbt_project").rglob("*.sql"),
        *(ROOT / "dbt_project").rglob("*.yml"),
        *(ROOT / "devkit").rglob("*.py"),
    ]
    found = []
    for path in files:
        rel = path.relative_to(ROOT)
        if path == DBT_PROJECT_FILE or "target" in rel.parts:
            continue
        if path.parent == VERSIONS and path.name[:4] < "0012":
            continue
        if pair.search(path.read_text()):
            found.append(str(rel))
    assert found == []
