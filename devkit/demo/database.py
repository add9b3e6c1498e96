"""The demo's database: ``BILLING_DATABASE_URL``, else the local server, else an embedded one.

Only the demo (``scripts/demo``) chooses a database by itself; every ``billing`` command
needs ``BILLING_DATABASE_URL`` (``billing_pipeline.db.connection.database_url``). The embedded
PostgreSQL (``pgserver``, a development dependency) lives under the demo's state folder.
"""

from __future__ import annotations

import os
import socket

from psycopg.conninfo import conninfo_to_dict

from billing_pipeline.core.errors import ConfigurationError
from billing_pipeline.db.connection import (
    DATABASE_NAME,
    LOCAL_HOST,
    LOCAL_PORT,
    make_conninfo_url,
    state_dir,
)


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


def demo_database_url(*, allow_embedded: bool = True) -> str:
    """For the demo only: the environment's database, else the local server's, else embedded."""
    url = os.environ.get("BILLING_DATABASE_URL", "").strip()
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
