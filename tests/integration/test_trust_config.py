"""Issue 11, points 3, 4 and 7: secrets never printed, no silent fallback database, operator errors.

* a password in either documented connection-string form is never printed;
* without BILLING_DATABASE_URL every command refuses (exit 3) naming the variable; only the demo
  falls back (``demo_database_url``);
* a database never migrated says to run `billing db upgrade` (exit 3); a mistyped database is
  not created unless `billing db upgrade --create` asks for it;
* Dagster's storage URL keeps the password, proved on a server of our own that requires one.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path

import dagster as dg
import pgserver
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from billing_pipeline.cli.main import main
from billing_pipeline.db.connection import redact_url
from billing_pipeline.db.dagster_instance import dagster_database_url, prepare_dagster_home
from devkit.demo.database import demo_database_url
from tests.support.databases import server_url


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


@pytest.mark.parametrize(
    "url",
    [
        "host=127.0.0.1 port=1 password=S dbname=x",
        "host=127.0.0.1 port=1 password='S S' dbname=x",
        "postgresql://u:S@127.0.0.1:1/db?password=S",
        "postgresql://u@127.0.0.1:1/db?sslmode=disable&password=S&sslpassword=S",
    ],
)
def test_a_password_is_never_printed_in_either_url_form(url, capsys, monkeypatch):
    monkeypatch.setenv("BILLING_DATABASE_URL", url)
    for argv in (("verify",), ("verify", "--json"), ("db", "upgrade")):
        code, out, err = run(capsys, *argv)
        assert code == 3 and "Cannot" in err
        assert "password=S" not in err + out and ":S@" not in err + out and "'S S'" not in err + out
    assert "S" not in redact_url(url).replace("SSL", "").replace("ssl", "")


def test_redacted_urls_keep_everything_but_the_secret():
    assert (
        redact_url("postgresql://u:p%40ss@h:5432/db?sslmode=require&password=x")
        == "postgresql://u:***@h:5432/db?sslmode=require&password=***"
    )
    assert redact_url("postgresql://u@h/db") == "postgresql://u@h/db"
    assert redact_url("host=h password = 'a \\' b' dbname=d") == "host=h password = *** dbname=d"


@pytest.mark.parametrize(
    "argv",
    [
        ("topup", "acme", "5", "--reference", "r1"),
        ("adjust", "acme", "5", "--reason", "x", "--actor", "y"),
        ("verify",),
        ("ledger", "acme"),
        ("status", "acme"),
        ("explain", "acme", "--month", "2026-11"),
        ("db", "upgrade"),
    ],
)
def test_without_billing_database_url_every_command_refuses(argv, capsys, monkeypatch):
    # A local server answers on 127.0.0.1:5432: main used to write there (or to an embedded one).
    monkeypatch.delenv("BILLING_DATABASE_URL", raising=False)
    code, out, err = run(capsys, *argv)
    assert code == 3 and out == ""
    assert "BILLING_DATABASE_URL is not set" in err and len(err.strip().splitlines()) == 1


def test_only_the_demo_falls_back_to_the_local_server(monkeypatch):
    monkeypatch.delenv("BILLING_DATABASE_URL", raising=False)
    assert conninfo_to_dict(demo_database_url(allow_embedded=False))["dbname"] == "satusky_billing"


@pytest.fixture
def missing_db(databases):
    name = f"{databases.prefix}_typo_{uuid.uuid4().hex[:6]}"  # one per test: a test may create it
    databases.created.append(name)  # dropped at the end if a test created it
    return server_url(name)


def test_db_upgrade_creates_a_missing_database_only_with_create(missing_db, capsys, monkeypatch):
    monkeypatch.setenv("BILLING_DATABASE_URL", missing_db)
    code, _, err = run(capsys, "db", "upgrade")
    assert code == 3 and "does not exist" in err and "--create" in err
    with psycopg.connect(server_url("postgres")) as conn:
        name = conninfo_to_dict(missing_db)["dbname"]
        assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None
    code, out, _ = run(capsys, "db", "upgrade", "--create", "--json")
    assert code == 0 and '"revision"' in out


def test_a_database_never_migrated_says_to_run_db_upgrade(missing_db, capsys, monkeypatch):
    with psycopg.connect(server_url("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{conninfo_to_dict(missing_db)["dbname"]}"')
    monkeypatch.setenv("BILLING_DATABASE_URL", missing_db)
    for argv in (("topup", "acme", "5", "--reference", "r"), ("verify",), ("ledger", "acme"), ("status", "acme")):
        code, out, err = run(capsys, *argv)
        assert code == 3 and out == "", (argv, err)
        assert "has never been migrated: run `billing db upgrade`" in err and "does not exist" not in err


@pytest.fixture
def password_server():
    """A PostgreSQL of our own that refuses connections without the password."""
    state = Path(tempfile.mkdtemp(prefix="billing-pw-", dir="/tmp"))  # short socket path, traversable
    state.chmod(0o755)
    server = pgserver.get_server(state / "pgdata", cleanup_mode="stop")
    try:
        info = conninfo_to_dict(server.get_uri())
        with psycopg.connect(host=info["host"], user="postgres", dbname="postgres", autocommit=True) as conn:
            conn.execute("ALTER USER postgres PASSWORD 'pw-Secret-42'")
            hba = conn.execute("SHOW hba_file").fetchone()[0]
            Path(hba).write_text("local all all scram-sha-256\nhost all all 127.0.0.1/32 scram-sha-256\n")
            conn.execute("SELECT pg_reload_conf()")
        yield info["host"]
    finally:
        server.cleanup()
        shutil.rmtree(state, ignore_errors=True)


def test_dagster_storage_works_on_a_server_that_requires_a_password(password_server, tmp_path, monkeypatch):
    billing_url = f"postgresql://postgres:pw-Secret-42@/satusky_billing?host={password_server}"
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(host=password_server, user="postgres", dbname="postgres").close()
    url = dagster_database_url(billing_url)
    assert conninfo_to_dict(url)["password"] == "pw-Secret-42"  # main dropped it
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("BILLING_DATABASE_URL", billing_url)  # the file names it; no other variable is needed
    monkeypatch.delenv("BILLING_DAGSTER_DATABASE_URL", raising=False)
    home = prepare_dagster_home(billing_url, tmp_path / "dagster_home")
    assert "pw-Secret-42" not in (home / "dagster.yaml").read_text()  # it stays in the environment

    @dg.asset
    def probe() -> int:
        return 1

    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert dg.materialize([probe], instance=instance).success
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 1
