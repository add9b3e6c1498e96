"""The ``dbt`` resource bound in billing_pipeline/definitions.py."""

from __future__ import annotations

from dagster_dbt import DbtCliResource

from billing_pipeline.transform.project import dbt_executable, dbt_project


class BillingDbtCliResource(DbtCliResource):
    """dagster-dbt's resource, without the dbt adapter it builds in this process before every call.

    That adapter parses every dbt macro (7 s the first time in a process, 1 s after, on these
    machines) and serves only dagster-dbt's row counts and column metadata. This project reads
    row counts from PostgreSQL itself (``transform.assets.with_row_counts``); dbt itself runs
    in its own process, as before.
    """

    def _initialize_dbt_core_adapter(self, args):  # noqa: ARG002  (dagster-dbt's signature)
        return None


def dbt_resource() -> DbtCliResource:
    return BillingDbtCliResource(project_dir=dbt_project, dbt_executable=dbt_executable())
