"""The Dagster instance's own classes: PostgreSQL storages and the instance, named in dagster.yaml.

**The storages.** dagster-postgres' run, event-log and schedule storages, with two changes:

* The URL. Their config also takes ``billing_database_url``: the storage is then the database
  ``<billing database>_dagster`` on the same server, with the same user and password
  (``dagster_instance.dagster_database_url``). A dagster.yaml that says
  ``billing_database_url: {env: BILLING_DATABASE_URL}`` holds no secret and needs no variable
  beyond the one every process already has. Any URL they are given goes to psycopg2: SQLAlchemy
  2.1 picks psycopg 3 for a bare ``postgresql://``, and dagster-postgres speaks psycopg2 (with
  psycopg 3 every run fails on ``NOTIFY run_events``).
* The event log keeps its connections. dagster-postgres builds its event-log engine without a
  pool (SQLAlchemy ``NullPool``) in every process but the web server: each event written opens
  and closes a connection, two with the asset index. A run records an event per step, check,
  asset and partition; a 24-hour ranged run of the hourly cycle writes about 2,500, and its run
  start alone took 23 s, half of it in connecting (bench/cycle_bench.py, profiled). The pool
  keeps two connections for the life of the process (the daemon, a run worker, the ``billing``
  command): writing an asset event, dagster-postgres opens a second connection while its index
  transaction holds the first. It opens up to ``MAX_OVERFLOW`` more while threads write at once;
  those are closed when released. The web server replaces the engine with its own pool as before
  (``optimize_for_webserver``). A pooled connection is checked with a ping only when it has been
  idle for ``PING_AFTER_IDLE_SECONDS`` (a dead one is then replaced before use), not on every
  checkout as SQLAlchemy's ``pool_pre_ping`` does: an event write checks a connection out one to
  three times, and those pings were a third of the time a one-hour run spent writing its ~400
  events (py-spy, bench/cycle_bench.py --small-run). Connections idle for less than that come
  from a burst of writes that just succeeded on them.

**The instance.** ``BillingDagsterInstance`` writes a ranged run's hourly materialisations in
batches (``event_batch_size`` in dagster.yaml, default 1000): one INSERT per output of a ranged
run instead of one write per hour; a 24-hour run spent more time on those writes than in its dbt
models. Dagster's own ``DAGSTER_EVENT_BATCH_SIZE``, when a process sets it, still wins.
"""

from __future__ import annotations

import os
import time

import dagster as dg
from dagster._config import Field, IntSource, StringSource
from dagster._core.storage.config import pg_config
from dagster_postgres.event_log import PostgresEventLogStorage
from dagster_postgres.run_storage import PostgresRunStorage
from dagster_postgres.schedule_storage import PostgresScheduleStorage
from dagster_postgres.utils import create_pg_engine, get_token_provider_from_config, pg_url_from_config

POOL_SIZE = 2  # see the module doc
MAX_OVERFLOW = 10
# Reconnect after an hour: a server-side idle timeout or a failover then costs one reconnect.
POOL_RECYCLE_SECONDS = 3600
# A pooled connection idle longer than this is pinged before use (see the module doc).
PING_AFTER_IDLE_SECONDS = 10.0
EVENT_BATCH_SIZE = 1000
PSYCOPG2_SCHEME = "postgresql+psycopg2"


def psycopg2_url(url: str) -> str:
    """``url`` with a bare ``postgresql://`` / ``postgres://`` scheme spelled for psycopg2."""
    scheme, sep, rest = url.partition("://")
    return f"{PSYCOPG2_SCHEME}://{rest}" if sep and scheme in ("postgresql", "postgres") else url


def storage_config_type():
    """dagster-postgres' storage config, plus ``billing_database_url`` (see the module doc)."""
    return {**pg_config(), "billing_database_url": Field(StringSource, is_required=False)}


def storage_url(config_value) -> str:
    """The storage's SQLAlchemy URL from its config, always through psycopg2."""
    if config_value.get("billing_database_url"):
        from billing_pipeline.db.dagster_instance import dagster_database_url

        return psycopg2_url(dagster_database_url(config_value["billing_database_url"]))
    return psycopg2_url(pg_url_from_config(config_value))


def _kwargs(config_value) -> dict:
    return {
        "postgres_url": storage_url(config_value),
        "should_autocreate_tables": config_value.get("should_autocreate_tables", True),
        "token_provider": get_token_provider_from_config(config_value),
    }


class BillingPostgresRunStorage(PostgresRunStorage):
    """dagster-postgres' run storage; its URL as ``storage_url`` gives it."""

    @classmethod
    def config_type(cls):
        return storage_config_type()

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> BillingPostgresRunStorage:
        return cls(inst_data=inst_data, **_kwargs(config_value))


class BillingPostgresScheduleStorage(PostgresScheduleStorage):
    """dagster-postgres' schedule storage; its URL as ``storage_url`` gives it."""

    @classmethod
    def config_type(cls):
        return storage_config_type()

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> BillingPostgresScheduleStorage:
        return cls(inst_data=inst_data, **_kwargs(config_value))


def ping_idle_connections(engine, idle_seconds: float = PING_AFTER_IDLE_SECONDS) -> None:
    """Ping a pooled connection at checkout when it was idle longer than ``idle_seconds``; a dead
    one is discarded and the pool connects anew (SQLAlchemy's ``DisconnectionError`` contract for
    checkout handlers)."""
    from sqlalchemy import event, exc

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection, record) -> None:
        record.info["billing_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection, record, _proxy) -> None:
        since = record.info.pop("billing_idle_since", None)
        if since is None or time.monotonic() - since <= idle_seconds:
            return  # new, or idle only briefly
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception:
            alive = False
        if not alive:
            raise exc.DisconnectionError("pooled connection failed its ping after being idle")


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
        )
        ping_idle_connections(self._engine)

    @classmethod
    def config_type(cls):
        return storage_config_type()

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> PooledPostgresEventLogStorage:
        return cls(inst_data=inst_data, **_kwargs(config_value))


class BillingDagsterInstance(dg.DagsterInstance):
    """The instance, with batched event writes for ranged runs (see the module doc)."""

    def __init__(self, *args, event_batch_size: int = EVENT_BATCH_SIZE, **kwargs):
        super().__init__(*args, **kwargs)
        self._billing_event_batch_size = event_batch_size

    @classmethod
    def config_schema(cls):
        return {"event_batch_size": Field(IntSource, is_required=False, default_value=EVENT_BATCH_SIZE)}

    @staticmethod
    def config_defaults(base_dir: str):
        from dagster._core.instance.ref import InstanceRef

        return InstanceRef.config_defaults(base_dir)

    def _get_event_batch_size(self) -> int:
        chosen = os.getenv("DAGSTER_EVENT_BATCH_SIZE")
        return int(chosen) if chosen else self._billing_event_batch_size
