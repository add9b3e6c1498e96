"""The dbt resource builds no in-process dbt adapter (seconds per call; row counts come from
PostgreSQL instead: transform.assets.with_row_counts)."""

from billing_pipeline.transform.resources import dbt_resource


def test_no_adapter_is_built_before_a_call():
    assert dbt_resource()._initialize_dbt_core_adapter(["build"]) is None
