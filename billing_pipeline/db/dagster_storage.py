"""Dagster's PostgreSQL event log, keeping its connections open between the events it writes.

dagster-postgres builds its event-log engine without a pool (SQLAlchemy ``NullPool``) in every
process but the web server: each event written opens and closes a connection, two with the
asset index. A run records an event per step, check, asset and partition; a 24-hour ranged run
of the hourly cycle writes about 2,500, and its run start alone (one "materialisation planned"
event per asset and hour) took 23 s, half of it in connecting (bench/cycle_bench.py, profiled).
With pooled connections the same events take a fraction of that.

The pool keeps two connections for the life of the process (the daemon, a run worker, the
``billing`` command): writing an asset event, dagster-postgres opens a second connection while
its index transaction holds the first. It opens up to ``MAX_OVERFLOW`` more while threads write
at once; those are closed when released. The web server replaces the engine with its own pool as before
(``optimize_for_webserver``). The run and schedule storages, which write a few rows per run,
stay as dagster-postgres builds them.

Named in dagster.yaml as ``event_log_storage: {module: billing_pipeline.db.dagster_storage,
class: PooledPostgresEventLogStorage, config: <dagster-postgres' own>}``.
"""

from __future__ import annotations

from dagster_postgres.event_log import PostgresEventLogStorage
from dagster_postgres.utils import create_pg_engine, get_token_provider_from_config, pg_url_from_config

POOL_SIZE = 2  # see the module doc
MAX_OVERFLOW = 10
# Reconnect after an hour: a server-side idle timeout or a failover then costs one reconnect.
POOL_RECYCLE_SECONDS = 3600


class PooledPostgresEventLogStorage(PostgresEventLogStorage):
    """``PostgresEventLogStorage`` with a small pool instead of a connection per event."""

    def __init__(self, postgres_url: str, should_autocreate_tables: bool = True, inst_data=None, token_provider=None):
        super().__init__(postgres_url, should_autocreate_tables, inst_data, token_provider)
        self._engine.dispose()
        self._engine = create_pg_engine(
            self.postgres_url,
            self._token_provider,
            isolation_level="AUTOCOMMIT",
            pool_size=POOL_SIZE,
            max_overflow=MAX_OVERFLOW,
            pool_recycle=POOL_RECYCLE_SECONDS,
            pool_pre_ping=True,
        )

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> PooledPostgresEventLogStorage:
        return cls(
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            inst_data=inst_data,
            token_provider=get_token_provider_from_config(config_value),
        )
