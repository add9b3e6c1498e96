"""The ``dbt`` resource bound in billing_pipeline/definitions.py."""

from __future__ import annotations

import os
from functools import cached_property
from importlib.metadata import version as installed_version
from pathlib import Path

from dagster_dbt import DagsterDbtTranslator, DbtCliResource
from packaging import version
from pydantic import Field

from billing_pipeline.transform.in_process import stream_in_process
from billing_pipeline.transform.project import dbt_executable, dbt_project, venv_dbt


class BillingDbtCliResource(DbtCliResource):
    """dagster-dbt's resource; the assets' builds run dbt in the run's process
    (``build_events``, transform/in_process.py), and without two costs dagster-dbt pays before
    a call:

    - The dbt adapter it builds before every call: that parses every dbt macro (7 s the first
      time in a process, 1 s after, on these machines) and serves only dagster-dbt's row counts
      and column metadata. This project reads row counts from PostgreSQL itself
      (``transform.assets.with_row_counts``).
    - ``dbt --version`` in a subprocess, to learn which dbt it drives: 3.5 s on these machines,
      nearly all of it dbt's imports, once per run process. The venv's dbt is the installed
      dbt-core package, whose version the package metadata gives without starting dbt.
    """

    in_process: bool = Field(
        default=True,
        description="Run the assets' dbt builds in the run's process (dbt imported and the project "
        "parsed once per process) rather than one dbt subprocess per call.",
    )

    def build_events(self, args: list[str], *, context, target_path):
        """The Dagster events of ``dbt <args>`` for ``context``'s assets, in this process when
        it can run here, else from a dbt subprocess (``DbtCliResource.cli``)."""
        if self.in_process:
            events = stream_in_process(args, context=context, translator=DagsterDbtTranslator(), target=target_path)
            if events is not None:
                return events
        return self.cli(args, context=context, target_path=target_path).stream()

    def _initialize_dbt_core_adapter(self, args):
        return None

    @cached_property
    def _cli_version(self) -> version.Version:
        if Path(self.dbt_executable) == venv_dbt():
            return version.parse(installed_version("dbt-core"))
        return super()._cli_version  # a dbt from elsewhere on PATH: ask it


def dbt_resource() -> BillingDbtCliResource:
    """The resource; BILLING_DBT_IN_PROCESS=0 runs every dbt call as a subprocess instead."""
    return BillingDbtCliResource(
        project_dir=dbt_project,
        dbt_executable=dbt_executable(),
        in_process=os.environ.get("BILLING_DBT_IN_PROCESS", "1") != "0",
    )
