"""Finding and connecting to the billing database.

``BILLING_DATABASE_URL`` names the database, as a URL (``postgresql://USER:PASSWORD@HOST:PORT/DB``)
or a libpq key/value string (``host=... dbname=...``). Every command uses only that database
and refuses to run without it (docs/rules/ledger.md). Only the demo falls back, to a local or
an embedded server (``devkit.demo.database``), never this package.

Passwords never reach a message: ``redact_url`` masks them in both spellings, in the URL's
user part and in its query (``?password=``), and ``redact_text`` masks them in a driver's error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from billing_pipeline.core.errors import ConfigurationError

DATABASE_NAME = "satusky_billing"
LOCAL_HOST, LOCAL_PORT = "127.0.0.1", 5432

# The pipeline's sessions (its own and dbt's) run without PostgreSQL's JIT compilation.
# PostgreSQL compiles a statement's expressions to machine code once its cost estimate passes
# ``jit_above_cost``, and inlines and optimises them past ``jit_*_above_cost``. The pipeline's
# statements are set-based over temporary tables and marts whose estimates pass those
# thresholds early, and compiling cost more than it saved: with JIT off the hourly cycle at
# 100,000 deployments went from 116.7 s to 107.6 s (ingestion 81.2 -> 75.6 s, the top-ups 0.67 ->
# 0.09 s), and the hour's ledger models at 10,000 from 3.68 s to 1.26 s (bench/cycle_bench.py
# --hourly, the sixth session: docs/benchmarks.md). Analysts' own sessions are left as the
# server sets them.
SESSION_OPTIONS = "-c jit=off"


def state_dir() -> Path:
    """Where local state (embedded database, Dagster home, Prometheus data) is kept."""
    return Path(os.environ.get("BILLING_STATE_DIR", ".billing")).resolve()


SECRET_PARAMS = ("password", "sslpassword")
_KEYWORD_SECRET = re.compile(r"\b(" + "|".join(SECRET_PARAMS) + r")(\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def redact_url(url: str) -> str:
    """The connection string with every password replaced by ``***``, safe to print or log.

    Handles both libpq spellings: a URL (password in the user part and/or ``?password=``) and a
    key/value string (``password=...``, quoted or not)."""
    if "://" not in url:
        return _KEYWORD_SECRET.sub(lambda m: f"{m[1]}{m[2]}***", url)
    try:
        parts = urlsplit(url)
    except ValueError:  # not a URL Python can split (e.g. an unclosed "[" of an IPv6 host): mask by pattern
        masked = re.sub(r"(://[^:@/?#]*:)[^@]*@", r"\1***@", url)
        return re.sub(r"((?:^|[?&])(?:" + "|".join(SECRET_PARAMS) + r")=)[^&]*", r"\1***", masked, flags=re.I)
    netloc = parts.netloc
    userinfo, at, hostinfo = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:***@{hostinfo}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in SECRET_PARAMS for k, _ in pairs):
            query = urlencode([(k, "***" if k.lower() in SECRET_PARAMS else v) for k, v in pairs], safe="*/")
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def redact_text(text: str, url: str) -> str:
    """``text`` (e.g. a driver's error message about ``url``) with the URL's passwords masked."""
    text = _KEYWORD_SECRET.sub(lambda m: f"{m[1]}{m[2]}***", text.replace(url, redact_url(url)))
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error:
        params = {}
    for name in SECRET_PARAMS:
        secret = params.get(name)
        if secret and len(secret) >= 4:  # a one-letter password cannot be masked in free text
            text = text.replace(secret, "***")
    return text


def make_conninfo_url(*, host: str, dbname: str, user: str = "postgres", port: int | None = None) -> str:
    if host.startswith("/"):
        return f"postgresql://{user}@/{dbname}?host={host}" + (f"&port={port}" if port else "")
    return f"postgresql://{user}@{host}:{port or LOCAL_PORT}/{dbname}"


def database_url() -> str:
    """The billing database named by ``BILLING_DATABASE_URL``; a ConfigurationError without it.

    There is no fallback: a command that writes money must not write it to whatever database
    happens to answer on this machine."""
    url = os.environ.get("BILLING_DATABASE_URL", "").strip()
    if url:
        _conninfo(url)  # a malformed URL is a configuration error (exit 3), said before any command uses it
        return url
    raise ConfigurationError(
        "BILLING_DATABASE_URL is not set: say which billing database to use, e.g. "
        "BILLING_DATABASE_URL=postgresql://USER@HOST:5432/satusky_billing (only the demo, "
        "`scripts/demo`, falls back to a local or embedded PostgreSQL)."
    )


def _conninfo(url: str) -> dict[str, str]:
    try:
        return conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise ConfigurationError(
            f"BILLING_DATABASE_URL {redact_url(url)} is not a PostgreSQL connection string "
            f"({redact_text(str(exc).strip(), url)}); write it as postgresql://USER@HOST:PORT/DB."
        ) from None


def ensure_database(url: str, *, create: bool = True) -> bool:
    """Make sure the database named in ``url`` exists; returns True if it was created now.

    With ``create=False`` a missing database is a ConfigurationError (a mistyped name is not
    silently turned into a new, empty billing database)."""
    params = _conninfo(url)
    dbname = params.get("dbname") or "postgres"
    admin = make_conninfo(url, dbname="postgres")
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
            if exists:
                return False
            if not create:
                raise ConfigurationError(
                    f"database {dbname!r} does not exist on the server of {redact_url(url)}. If the name is "
                    "right, create it with `billing db upgrade --create`; otherwise correct BILLING_DATABASE_URL."
                )
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
            return True
    except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
        # Created concurrently by another process: that is what we wanted. Two CREATE DATABASE
        # racing can fail as a unique violation on pg_database rather than duplicate_database.
        return False
    except psycopg.OperationalError as exc:
        raise ConfigurationError(
            f"Cannot reach PostgreSQL at {redact_url(url)}: {redact_text(str(exc).strip(), url)}. "
            "Check that the server runs, or set BILLING_DATABASE_URL."
        ) from None


def session_options(url: str) -> str:
    """The libpq ``options`` of a pipeline session on ``url``: ``SESSION_OPTIONS``, then those the
    URL gives, else those of ``PGOPTIONS`` (libpq's own precedence), so that a setting the
    operator chose there comes last and wins."""
    given = conninfo_to_dict(url).get("options") or os.environ.get("PGOPTIONS", "")
    return f"{SESSION_OPTIONS} {given}".strip()


@contextmanager
def connect(url: str | None = None, *, autocommit: bool = False) -> Iterator[psycopg.Connection]:
    """A psycopg connection to the billing database (``session_options``); errors name the
    (redacted) URL."""
    url = url or database_url()
    try:
        conn = psycopg.connect(url, autocommit=autocommit, connect_timeout=10, options=session_options(url))
    except (psycopg.OperationalError, psycopg.ProgrammingError) as exc:
        raise ConfigurationError(
            f"Cannot connect to the billing database at {redact_url(url)}: {redact_text(str(exc).strip(), url)}. "
            "Check that the server runs and the database exists (run `billing db upgrade`), "
            "or set BILLING_DATABASE_URL."
        ) from None
    try:
        with conn:
            yield conn
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn, psycopg.errors.InvalidSchemaName):
        problem = _schema_problem(url)
        if problem:
            raise ConfigurationError(problem) from None
        raise
    finally:
        conn.close()


def _schema_problem(url: str) -> str | None:
    """Why the billing schema is not usable (never migrated, or behind the code), else None."""
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            if conn.execute("SELECT to_regclass('billing.alembic_version')").fetchone()[0] is None:
                current = None
            else:
                row = conn.execute("SELECT version_num FROM billing.alembic_version").fetchone()
                current = row[0] if row else None
    except psycopg.Error:
        return None
    from billing_pipeline.db.revisions import head_revision  # Alembic only when the schema is in question

    head = head_revision()
    if current == head:
        return None
    state = "has never been migrated" if current is None else f"is at migration {current}, this code needs {head}"
    return (
        f"the billing database at {redact_url(url)} {state}: run `billing db upgrade` "
        "(with the same BILLING_DATABASE_URL), then try again."
    )


def sqlalchemy_url(url: str) -> str:
    """The same database for SQLAlchemy (Alembic), through psycopg 3."""
    scheme, rest = url.split("://", 1)
    return f"postgresql+psycopg://{rest}" if scheme in ("postgresql", "postgres") else url


def dbt_target(url: str) -> dict[str, str | int]:
    """Host, port, user, password and database as dbt-postgres wants them."""
    p = _conninfo(url)
    return {
        "host": p.get("host", LOCAL_HOST),
        "port": int(p.get("port") or LOCAL_PORT),
        "user": p.get("user", "postgres"),
        "password": p.get("password", ""),
        "dbname": p.get("dbname", DATABASE_NAME),
    }
