"""Database access: where the billing database is, connecting to it, migrating it."""

from billing_pipeline.db.connection import connect, database_url, redact_url

__all__ = ["connect", "database_url", "redact_url"]
