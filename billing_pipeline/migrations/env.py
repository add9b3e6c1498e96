"""Alembic environment: runs the billing migrations against the URL given in the config.

An advisory lock serialises concurrent `billing db upgrade` runs, so two starting at once do
not race to create the same objects.
"""

from alembic import context
from sqlalchemy import create_engine, text

MIGRATION_LOCK = 7_420_001  # arbitrary, stable advisory-lock id for migrations

config = context.config
engine = create_engine(config.get_main_option("sqlalchemy.url"))

with engine.connect() as connection:
    connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK})
    connection.execute(text("CREATE SCHEMA IF NOT EXISTS billing"))
    connection.commit()
    try:
        context.configure(
            connection=connection,
            version_table_schema="billing",
            transaction_per_migration=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
    finally:
        connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK})
        connection.commit()
engine.dispose()
