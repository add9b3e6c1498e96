"""The billing database as a Dagster resource."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import psycopg

from billing_pipeline.db.connection import connect


class PostgresResource(dg.ConfigurableResource):
    """Connections to the billing database (schema ``billing``)."""

    database_url: str

    @contextmanager
    def connect(self, *, autocommit: bool = False) -> Iterator[psycopg.Connection]:
        with connect(self.database_url, autocommit=autocommit) as conn:
            yield conn
