"""The ``dbt`` resource bound in billing_pipeline/definitions.py."""

from __future__ import annotations

from dagster_dbt import DbtCliResource

from billing_pipeline.transform.project import dbt_executable, dbt_project


def dbt_resource() -> DbtCliResource:
    return DbtCliResource(project_dir=dbt_project, dbt_executable=dbt_executable())
