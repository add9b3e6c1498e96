"""Issue 21, point 7: inputs and configuration that used to crash, through the `billing` console
script as a subprocess. Each mistake is one line on stderr (no traceback) with its exit code,
said before any run is launched; each standard configuration works without extra variables.

* close-month refuses malformed months and months outside [first billable month, the clock];
* a malformed BILLING_DATABASE_URL is a configuration error (exit 3), its password masked;
* close-month before any hourly cycle built the dbt models closes the month (no consumption to
  credit), on a server that requires a password, with no variable beyond BILLING_DATABASE_URL;
* a dagster.yaml as Dagster's documentation writes it (``postgres_url: "postgresql://…"``) works;
  one that names an unset variable is one line, exit 3.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import psycopg
import pytest

from billing_pipeline.db.dagster_instance import dagster_database_url, prepare_dagster_home
from tests.integration.test_trust_config import password_server
from tests.support.platform import create_accounts

BILLING = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "billing")
NOW = "2026-12-05T00:00:00Z"  # the clock every command here is given


def billing(env: dict, *argv: str) -> tuple[int, str, str]:
    base = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "BILLING_DAGSTER_DATABASE_URL")}
    proc = subprocess.run([BILLING, *argv], env={**base, **env}, capture_output=True, text=True, timeout=600)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, proc.stdout, proc.stderr


def runs_recorded(billing_url: str) -> int:
    """Runs in the Dagster storage (0 when no instance was ever opened on it: no tables yet)."""
    with psycopg.connect(dagster_database_url(billing_url)) as conn:
        if conn.execute("SELECT to_regclass('runs')").fetchone()[0] is None:
            return 0
        return conn.execute("SELECT count(*) FROM runs").fetchone()[0]


def one_line(err: str) -> str:
    assert err.endswith("\n") and err.count("\n") == 1, err
    return err


BAD_MONTHS = [
    # One parser, one message, as for `invoice --month` and `explain --month` (core.times.parse_month).
    ("2026-1", "month '2026-1' is not a month: write it as YYYY-MM"),
    ("2026-11 ", "month '2026-11 ' is not a month: write it as YYYY-MM"),
    ("9999-12", "is not a month"),  # beyond the parser's 9998-12; used to be internal error (OverflowError), exit 1
    (
        "1969-12",
        "is not a month",
    ),  # before the parser's 1970-01; used to launch a run that failed with two stack traces
    ("2024-12", "before the first billable hour"),  # BILLING_FIRST_HOUR is 2025-01-01 in the tests
    ("2026-12", "has not ended"),
    ("20261-1", "month '20261-1' is not a month: write it as YYYY-MM"),
]


def test_close_month_refuses_bad_months_before_any_run(db_url, tmp_path):
    home = prepare_dagster_home(db_url, tmp_path / "dagster_home")
    env = {"BILLING_DATABASE_URL": db_url, "DAGSTER_HOME": str(home), "BILLING_FIRST_HOUR": "2025-01-01T00:00Z"}
    for month, said in BAD_MONTHS:
        code, out, err = billing(env, "close-month", month, "--now", NOW)
        assert (code, out) == (2, ""), (month, err)
        assert said in one_line(err), (month, err)
    code, out, err = billing(env, "close-month", "9999-12", "--now", NOW, "--json")
    assert code == 2 and out == "" and json.loads(err)["code"] == "invalid_input"
    assert runs_recorded(db_url) == 0


@pytest.mark.parametrize(
    "argv",
    [
        ("close-month", "2026-11", "--now", NOW),
        ("run", "--start", "2026-11-01T00:00Z", "--end", "2026-11-01T01:00Z", "--now", NOW),
        ("status", "acme"),
    ],
    ids=["close-month", "run", "status"],
)
def test_a_malformed_database_url_is_a_configuration_error(argv):
    env = {"BILLING_DATABASE_URL": "postgresql://u:pw-Secret@[::1:5432/db", "PROMETHEUS_URL": "http://127.0.0.1:1"}
    code, out, err = billing(env, *argv)
    assert (code, out) == (3, ""), err  # used to be internal error (ValueError), exit 1
    assert "is not a PostgreSQL connection string" in one_line(err) and "pw-Secret" not in err


def test_close_month_before_the_first_cycle_on_a_password_server(password_server, tmp_path):
    """No dbt model was ever built (analytics.fct_priced_usage does not exist), the server refuses
    a connection without the password, and only BILLING_DATABASE_URL is set."""
    url = f"postgresql://postgres:pw-Secret-42@/satusky_billing?host={password_server}"
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(host=password_server, user="postgres", dbname="postgres").close()
    env = {"BILLING_DATABASE_URL": url, "BILLING_FIRST_HOUR": "2026-11-01T00:00Z"}
    code, _, err = billing(env, "db", "upgrade", "--create")
    assert code == 0, err
    create_accounts(url, "acme")
    home = prepare_dagster_home(url, tmp_path / "dagster_home")
    assert "pw-Secret-42" not in (home / "dagster.yaml").read_text()
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT to_regclass('analytics.fct_priced_usage')").fetchone()[0] is None

    code, out, err = billing({**env, "DAGSTER_HOME": str(home)}, "close-month", "2026-11", "--now", NOW, "--json")
    assert code == 0, err
    summary = json.loads(out)
    # Used to fail the run: "analytics.fct_priced_usage does not exist". No usage: nothing to credit or bill.
    assert (summary["month"], summary["invoices_issued"], summary["sla_credits_posted"]) == ("2026-11", 0, 0)
    assert [r["status"] for r in summary["runs"]] == ["SUCCESS"]
    with psycopg.connect(dagster_database_url(url)) as conn:
        assert conn.execute("SELECT run_id, status FROM runs").fetchall() == [(summary["runs"][0]["run_id"], "SUCCESS")]
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM billing.credit_transactions").fetchone()[0] == 0
    assert "pw-Secret-42" not in out + err


def test_a_dagster_yaml_as_dagsters_docs_write_it_works(db_url, tmp_path):
    """``storage: postgres: postgres_url: "postgresql://…"``: SQLAlchemy 2.1 would pick psycopg 3
    for the bare scheme and every run failed on ``NOTIFY run_events``; `billing` opens it with psycopg2."""
    storage_url = dagster_database_url(db_url)
    assert storage_url.startswith("postgresql://")
    prepare_dagster_home(db_url, tmp_path / "unused")  # creates the storage database
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(f'storage:\n  postgres:\n    postgres_url: "{storage_url}"\n')
    create_accounts(db_url, "acme")
    env = {"BILLING_DATABASE_URL": db_url, "DAGSTER_HOME": str(home), "BILLING_FIRST_HOUR": "2025-01-01T00:00Z"}
    code, out, err = billing(env, "close-month", "2026-11", "--now", NOW, "--json")
    assert code == 0, err
    assert [r["status"] for r in json.loads(out)["runs"]] == ["SUCCESS"]
    assert runs_recorded(db_url) == 1

    (home / "dagster.yaml").write_text("storage:\n  postgres:\n    postgres_url:\n      env: BILLING_TEST_UNSET_URL\n")
    code, out, err = billing(env, "close-month", "2026-10", "--now", NOW)
    assert (code, out) == (3, "")
    assert "BILLING_TEST_UNSET_URL" in one_line(err) and str(home / "dagster.yaml") in err
    assert runs_recorded(db_url) == 1
