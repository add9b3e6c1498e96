"""Apply the Alembic migrations (``billing db upgrade``)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from billing_pipeline.db.connection import ensure_database, sqlalchemy_url
from billing_pipeline.db.revisions import MIGRATIONS_DIR, head_revision


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # '%' would be read as interpolation by configparser.
    cfg.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, *, create: bool = True) -> str:
    """Migrate the database to the newest revision; returns that revision.

    A missing database is created when ``create`` is true (tests, the demo, ``billing db upgrade
    --create``), else refused with a ConfigurationError."""
    ensure_database(url, create=create)
    command.upgrade(alembic_config(url), "head")
    return head_revision()
