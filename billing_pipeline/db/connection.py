"""Finding and connecting to the billing database.

``BILLING_DATABASE_URL`` names the database. Without it, the command line and the demo fall
back, in order, to the local server on 127.0.0.1:5432 (database ``satusky_billing``) and to an
embedded PostgreSQL (``pgserver``) kept under ``BILLING_STATE_DIR`` (default ``./.billing``).
"""

from __future__ import annotations

import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from billing_pipeline.errors import ConfigurationError

DATABASE_NAME = "satusky_billing"
LOCAL_HOST, LOCAL_PORT = "127.0.0.1", 5432


def state_dir() -> Path:
    """Where local state (embedded database, Dagster home, Prometheus data) is kept."""
    return Path(os.environ.get("BILLING_STATE_DIR", ".billing")).resolve()


def redact_url(url: str) -> str:
    """The URL with any password replaced, safe to print or log."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def local_server() -> tuple[str, int]:
    """The local server to try (``BILLING_LOCAL_PG=host:port``, default 127.0.0.1:5432)."""
    host, _, port = os.environ.get("BILLING_LOCAL_PG", f"{LOCAL_HOST}:{LOCAL_PORT}").rpartition(":")
    return host, int(port)


def _local_server_answers(timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(local_server(), timeout=timeout):
            return True
    except OSError:
        return False


def _embedded_server_url() -> str:
    """Start (or reuse) an embedded PostgreSQL and return the URL of its billing database."""
    import pgserver  # imported lazily: only needed on machines without a server

    data_dir = state_dir() / "pgdata"
    data_dir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(data_dir, cleanup_mode=None)
    # pgserver listens on a Unix socket only; its URI carries the socket folder as host.
    info = conninfo_to_dict(server.get_uri())
    return make_conninfo_url(host=info["host"], dbname=DATABASE_NAME, user=info.get("user", "postgres"))


def make_conninfo_url(*, host: str, dbname: str, user: str = "postgres", port: int | None = None) -> str:
    if host.startswith("/"):
        return f"postgresql://{user}@/{dbname}?host={host}" + (f"&port={port}" if port else "")
    return f"postgresql://{user}@{host}:{port or LOCAL_PORT}/{dbname}"


def database_url(*, allow_embedded: bool = True) -> str:
    """The billing database URL: the environment's, else the local server's, else embedded."""
    url = os.environ.get("BILLING_DATABASE_URL")
    if url:
        return url
    host, port = local_server()
    if _local_server_answers():
        return make_conninfo_url(host=host, dbname=DATABASE_NAME, port=port)
    if allow_embedded:
        return _embedded_server_url()
    raise ConfigurationError(
        "No billing database: BILLING_DATABASE_URL is not set and nothing answers on "
        f"{host}:{port}. Set BILLING_DATABASE_URL=postgresql://USER@HOST:PORT/DB."
    )


def ensure_database(url: str) -> None:
    """Create the database named in ``url`` if the server does not have it yet."""
    params = conninfo_to_dict(url)
    dbname = params.get("dbname") or "postgres"
    admin = make_conninfo(url, dbname="postgres")
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    except psycopg.errors.DuplicateDatabase:
        pass  # created concurrently by another process: that is what we wanted
    except psycopg.OperationalError as exc:
        raise ConfigurationError(
            f"Cannot reach PostgreSQL at {redact_url(url)}: {str(exc).strip()}. "
            "Check that the server runs, or set BILLING_DATABASE_URL."
        ) from None


@contextmanager
def connect(url: str | None = None, *, autocommit: bool = False) -> Iterator[psycopg.Connection]:
    """A psycopg connection to the billing database; errors name the (redacted) URL."""
    url = url or database_url()
    try:
        conn = psycopg.connect(url, autocommit=autocommit, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise ConfigurationError(
            f"Cannot connect to the billing database at {redact_url(url)}: {str(exc).strip()}. "
            "Check that the server runs and the database exists (run `billing db upgrade`), "
            "or set BILLING_DATABASE_URL."
        ) from None
    try:
        with conn:
            yield conn
    finally:
        conn.close()


def sqlalchemy_url(url: str) -> str:
    """The same database for SQLAlchemy (Alembic), through psycopg 3."""
    scheme, rest = url.split("://", 1)
    return f"postgresql+psycopg://{rest}" if scheme in ("postgresql", "postgres") else url


def dbt_target(url: str) -> dict[str, str | int]:
    """Host, port, user, password and database as dbt-postgres wants them."""
    p = conninfo_to_dict(url)
    return {
        "host": p.get("host", LOCAL_HOST),
        "port": int(p.get("port") or LOCAL_PORT),
        "user": p.get("user", "postgres"),
        "password": p.get("password", ""),
        "dbname": p.get("dbname", DATABASE_NAME),
    }
