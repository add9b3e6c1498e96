"""Finding an account from the command line: `billing accounts` lists them (text and JSON), and
every command that takes an ACCOUNT answers a mistyped id with the closest known one (one
helper, cli/inputs.py). Months are read by one parser with one message everywhere."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import psycopg
import pytest

from billing_pipeline.cli.inputs import account_suggestion
from billing_pipeline.cli.main import main
from tests.integration.test_cli_json import validate
from tests.support.platform import create_accounts, ledger_rows

MONTH_MESSAGE = (
    "{what} '{text}' is not a month: write it as YYYY-MM (four digits, a dash, two digits) between "
    "1970-01 and 9998-12, e.g. 2026-11."
)


def attempt(capsys, argv: list[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def accounts_db(db_url, frozen_clock, monkeypatch, tmp_path):
    """acme (12 credits, above its threshold of 10; evaluated healthy), initech (no credit, not
    evaluated: grace_period from the balance) and umbrella (persisted as expired)."""
    create_accounts(db_url, "acme", "initech", "umbrella")
    frozen_clock.set("2026-11-24T15:00:00Z")
    assert main(["topup", "acme", "12", "--reference", "pay-1"]) == 0
    at = datetime(2026, 11, 24, 16, tzinfo=UTC)
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO billing.account_lifecycle (account_id, state, entered_at, grace_deadline, "
            "last_balance, evaluated_at) VALUES ('acme', 'healthy', %s, NULL, 12, %s), "
            "('umbrella', 'expired', %s, %s, 0, %s)",
            (at, at, at, at, at),
        )
    kubeconfig = tmp_path / "kubeconfig"  # cleanup-preview: a cluster that is never reached
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'http://127.0.0.1:1'}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n"
        "users: [{name: u, user: {}}]\n"
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    return db_url


def test_accounts_lists_id_name_state_and_balance(accounts_db, capsys):
    code, out, err = attempt(capsys, ["accounts"])
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "account    name               state                             balance (credits)",
        "─" * 81,
        "acme       Account acme       healthy                                  +12.000000",
        "initech    Account initech    grace_period (from the balance)           +0.000000",
        "umbrella   Account umbrella   expired                                   +0.000000",
        "3 account(s). Details: billing status ACCOUNT.",
    ]


def test_accounts_json_validates_against_its_schema(accounts_db, capsys):
    code, out, err = attempt(capsys, ["accounts", "--json"])
    assert (code, err) == (0, "")
    document = json.loads(out)
    validate("accounts", document)
    assert document == {
        "count": 3,
        "accounts": [
            {
                "account_id": "acme",
                "name": "Account acme",
                "state": "healthy",
                "evaluated": True,
                "balance": "12.000000",
                "low_balance_threshold": "10.000000",
            },
            {
                "account_id": "initech",
                "name": "Account initech",
                "state": "grace_period",
                "evaluated": False,
                "balance": "0.000000",
                "low_balance_threshold": "10.000000",
            },
            {
                "account_id": "umbrella",
                "name": "Account umbrella",
                "state": "expired",
                "evaluated": True,
                "balance": "0.000000",
                "low_balance_threshold": "10.000000",
            },
        ],
    }


def test_accounts_on_an_empty_platform(db_url, capsys):
    assert attempt(capsys, ["accounts"]) == (
        0,
        "No accounts yet: billing.accounts is empty (the platform creates them).\n",
        "",
    )
    assert json.loads(attempt(capsys, ["-o", "json", "accounts"])[1]) == {"count": 0, "accounts": []}


# Every command that takes an ACCOUNT, with the rest of its arguments valid.
ACCOUNT_COMMANDS = [
    ["ledger", "{}"],
    ["topup", "{}", "5", "--reference", "r-1"],
    ["adjust", "{}", "5", "--reason", "r", "--actor", "a"],
    ["status", "{}"],
    ["explain", "{}", "--month", "2026-11"],
    ["invoice", "{}", "--month", "2026-11"],
    ["cleanup-preview", "{}"],
]


@pytest.mark.parametrize("argv", ACCOUNT_COMMANDS, ids=[a[0] for a in ACCOUNT_COMMANDS])
def test_every_account_command_suggests_the_closest_account(accounts_db, capsys, argv):
    before = ledger_rows(accounts_db)
    code, out, err = attempt(capsys, [w.format("acmee") for w in argv])
    assert (code, out) == (2, ""), err
    assert err.startswith("billing: unknown account") and "'acmee'" in err
    assert err.endswith(" Did you mean 'acme'? `billing accounts` lists every account.\n"), err
    assert err.count("\n") == 1 and err.count("Did you mean") == 1

    code, out, err = attempt(capsys, [w.format("zzz") for w in argv])
    assert (code, out) == (2, "") and err.endswith(". `billing accounts` lists the 3 account(s).\n"), err
    assert ledger_rows(accounts_db) == before  # nothing written


def test_the_suggestion_ignores_case_and_comes_in_json_too(accounts_db, capsys):
    code, out, err = attempt(capsys, ["status", "ACME"])
    assert (code, out) == (2, "")
    assert err == (
        "billing: unknown account 'ACME': not in billing.accounts. Did you mean 'acme'? "
        "`billing accounts` lists every account.\n"
    )
    code, out, err = attempt(capsys, ["--json", "ledger", "initek"])
    assert (code, out) == (2, "")
    assert json.loads(err) == {
        "error": "unknown account 'initek': not in billing.accounts. Did you mean 'initech'? "
        "`billing accounts` lists every account.",
        "code": "unknown_account",
        "exit_code": 2,
    }


def test_account_suggestion_words():
    assert account_suggestion("acmee", ["acme", "initech"]) == (
        "Did you mean 'acme'? `billing accounts` lists every account."
    )
    assert account_suggestion("Initech", ["acme", "initech"]).startswith("Did you mean 'initech'?")
    assert account_suggestion("zzz", ["acme", "initech"]) == "`billing accounts` lists the 2 account(s)."
    assert account_suggestion("acme", []) == "There are no accounts yet (billing.accounts is empty)."


BAD_MONTHS = ["2026-13", "2026-1", "2026-11 ", "11-2026", "9999-12"]


@pytest.mark.parametrize("text", BAD_MONTHS)
def test_one_bad_month_message_everywhere(accounts_db, capsys, text, tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))  # close-month refuses before any instance is read
    said = {}
    for argv in (
        ["explain", "acme", "--month", text],
        ["invoice", "acme", "--month", text],
        ["close-month", text, "--now", "2026-12-06T00:00Z"],
    ):
        code, out, err = attempt(capsys, argv)
        assert (code, out) == (2, ""), err
        said[argv[0]] = err
    assert said["explain"] == said["invoice"] == f"billing: {MONTH_MESSAGE.format(what='--month', text=text)}\n"
    assert said["close-month"] == f"billing: {MONTH_MESSAGE.format(what='month', text=text)}\n"
