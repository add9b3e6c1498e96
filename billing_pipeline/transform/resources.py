"""The ``dbt`` resource bound in billing_pipeline/definitions.py."""

from __future__ import annotations

from functools import cached_property
from importlib.metadata import version as installed_version
from pathlib import Path

from dagster_dbt import DbtCliResource
from packaging import version

from billing_pipeline.transform.project import dbt_executable, dbt_project, venv_dbt


class BillingDbtCliResource(DbtCliResource):
    """dagster-dbt's resource, without two costs it pays in this process before every run's
    first call; dbt itself runs in its own process, as before.

    - The dbt adapter it builds before every call: that parses every dbt macro (7 s the first
      time in a process, 1 s after, on these machines) and serves only dagster-dbt's row counts
      and column metadata. This project reads row counts from PostgreSQL itself
      (``transform.assets.with_row_counts``).
    - ``dbt --version`` in a subprocess, to learn which dbt it drives: 3.5 s on these machines,
      nearly all of it dbt's imports, once per run process. The venv's dbt is the installed
      dbt-core package, whose version the package metadata gives without starting dbt.
    """

    def _initialize_dbt_core_adapter(self, args):  # noqa: ARG002  (dagster-dbt's signature)
        return None

    @cached_property
    def _cli_version(self) -> version.Version:
        if Path(self.dbt_executable) == venv_dbt():
            return version.parse(installed_version("dbt-core"))
        return super()._cli_version  # a dbt from elsewhere on PATH: ask it


def dbt_resource() -> DbtCliResource:
    return BillingDbtCliResource(project_dir=dbt_project, dbt_executable=dbt_executable())
