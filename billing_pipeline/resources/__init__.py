"""Dagster resources shared by every domain. Side effects live behind these."""

from billing_pipeline.resources.postgres import PostgresResource

__all__ = ["PostgresResource"]
