"""The instance's event log keeps its connections between events (db/dagster_storage.py); the
event log dagster-postgres builds outside the web server connects once per event."""

import dagster as dg
import yaml
from sqlalchemy import event

from billing_pipeline.core.partitions import hourly_partitions
from billing_pipeline.db.dagster_instance import dagster_database_url, prepare_dagster_home
from billing_pipeline.db.dagster_storage import PooledPostgresEventLogStorage, psycopg2_url


@dg.asset(partitions_def=hourly_partitions, backfill_policy=dg.BackfillPolicy.single_run())
def hours_probe(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"hours": len(context.partition_keys)})


def _connections_for_a_ranged_run(instance: dg.DagsterInstance, hours: int) -> int:
    opened = []
    event.listen(instance.event_log_storage._engine, "connect", lambda *_args: opened.append(1))
    keys = hourly_partitions.get_partition_keys()[:hours]
    result = dg.materialize(
        [hours_probe],
        instance=instance,
        tags={"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]},
    )
    assert result.success
    recorded = instance.get_materialized_partitions(hours_probe.key)
    assert recorded == set(keys)  # every hour recorded, whichever way it was written
    return len(opened)


def test_the_instance_writes_a_ranged_runs_events_over_its_two_pooled_connections(db_url, tmp_path, monkeypatch):
    home = prepare_dagster_home(db_url, tmp_path / "dagster_home")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.event_log_storage) is PooledPostgresEventLogStorage
        assert _connections_for_a_ranged_run(instance, hours=24) <= 2


def test_dagster_postgres_own_event_log_connects_for_every_event(db_url, tmp_path):
    """The reason for the pool: the same run on the unpooled storage opens a connection per event."""
    home = prepare_dagster_home(db_url, tmp_path / "dagster_home")
    config = yaml.safe_load((home / "dagster.yaml").read_text())
    config["event_log_storage"] = {  # dagster-postgres' own class and config, through psycopg2
        "module": "dagster_postgres.event_log",
        "class": "PostgresEventLogStorage",
        "config": {"postgres_url": psycopg2_url(dagster_database_url(db_url))},
    }
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.event_log_storage) is not PooledPostgresEventLogStorage
        assert _connections_for_a_ranged_run(instance, hours=24) > 48


def test_a_run_writes_its_events_without_pinging_its_busy_connections(db_url, tmp_path, monkeypatch):
    """A pooled connection is pinged only after it sat idle (PING_AFTER_IDLE_SECONDS), not at every
    checkout: a run writing events back to back sends no ping at all."""
    home = prepare_dagster_home(db_url, tmp_path / "dagster_home")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        dialect = instance.event_log_storage._engine.dialect
        pings = []
        original = dialect.do_ping
        monkeypatch.setattr(dialect, "do_ping", lambda conn: pings.append(1) or original(conn))
        assert _connections_for_a_ranged_run(instance, hours=3) <= 2
        assert pings == []


def test_an_idle_pooled_connection_that_died_is_replaced_before_use(db_url):
    import psycopg
    from dagster_postgres.utils import create_pg_engine

    from billing_pipeline.db.dagster_storage import ping_idle_connections

    engine = create_pg_engine(psycopg2_url(db_url), None, isolation_level="AUTOCOMMIT", pool_size=1, max_overflow=0)
    ping_idle_connections(engine, idle_seconds=0)
    try:
        with engine.connect() as conn:
            first = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        with psycopg.connect(db_url, autocommit=True) as admin:  # the server drops the idle connection
            admin.execute("SELECT pg_terminate_backend(%s)", (first,))
        with engine.connect() as conn:  # pinged at checkout, found dead, replaced: no error here
            again = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        assert again != first
    finally:
        engine.dispose()
