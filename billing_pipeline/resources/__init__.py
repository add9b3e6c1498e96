"""Dagster resources shared by every domain. Side effects live behind these.

``PostgresResource`` is imported on first use (PEP 562): the plain modules here (``cluster``)
serve the command line too, which must start without importing Dagster.
"""

from __future__ import annotations

__all__ = ["PostgresResource"]


def __getattr__(name: str):
    if name == "PostgresResource":
        from billing_pipeline.resources.postgres import PostgresResource

        return PostgresResource
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
