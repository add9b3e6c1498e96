"""The dbt resource skips two costs dagster-dbt pays in the run process: the in-process dbt
adapter (row counts come from PostgreSQL instead: transform.assets.with_row_counts) and the
``dbt --version`` subprocess (the venv's dbt is the installed dbt-core package); and it runs
dbt in the run's process unless dagster-dbt needs a copy of the project."""

from importlib.metadata import version

import dagster_dbt.core.resource as dagster_dbt_resource

from billing_pipeline.transform.project import dbt_project
from billing_pipeline.transform.resources import BillingDbtCliResource, dbt_resource


def test_no_adapter_is_built_before_a_call():
    assert dbt_resource()._initialize_dbt_core_adapter(["build"]) is None


def test_the_venv_dbt_version_comes_from_the_package_without_starting_dbt(monkeypatch):
    def no_subprocess(*args, **kwargs):
        raise AssertionError(f"dbt was started: {args}")

    monkeypatch.setattr(dagster_dbt_resource, "check_output", no_subprocess)
    assert str(dbt_resource()._cli_version) == version("dbt-core")


def test_a_dbt_from_elsewhere_is_asked_its_version(monkeypatch, tmp_path):
    asked = []

    def fake_dbt(args, *rest, **kwargs):
        asked.append(args)
        return b"Core:\n  - installed: 1.9.4\n"

    monkeypatch.setattr(dagster_dbt_resource, "check_output", fake_dbt)
    (tmp_path / "dbt").write_text("#!/bin/sh\n")
    (tmp_path / "dbt").chmod(0o755)
    other = BillingDbtCliResource(project_dir=dbt_project, dbt_executable=str(tmp_path / "dbt"))
    assert str(other._cli_version) == "1.9.4"
    assert asked == [[str(tmp_path / "dbt"), "--version"]]


def test_a_subset_dagster_dbt_writes_a_selector_file_for_goes_to_a_subprocess(monkeypatch, tmp_path):
    """For a very large subset dagster-dbt copies the project to write selectors.yml there; only
    a dbt started in that copy reads it, so that call is left to the subprocess (None)."""
    from billing_pipeline.transform import in_process

    class ProjectCopy:
        project_dir = tmp_path

    class Params:
        dbt_project = ProjectCopy

    monkeypatch.setattr(in_process, "get_updated_cli_invocation_params_for_context", lambda **kwargs: Params)
    assert in_process.stream_in_process(["build"], context=None, translator=None, target=tmp_path) is None
