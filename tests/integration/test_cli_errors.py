"""Each command typed as a newcomer would get it wrong: a typo, an unknown account, a bad month,
a bad time. Every mistake is one line on stderr, names what to do, and exits with the right code
(2 = bad input or usage); nothing is written, nothing reaches stdout, no traceback."""

from __future__ import annotations

import json
import re

import pytest

from billing_pipeline.cli.main import build_parser, main
from tests.support.platform import create_accounts, ledger_rows


@pytest.fixture
def cli_db(db_url, monkeypatch, tmp_path):
    create_accounts(db_url, "acme")
    # No cluster is needed to refuse bad input; a kubeconfig that points nowhere proves it.
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'http://127.0.0.1:1'}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n"
        "users: [{name: u, user: {}}]\n"
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.delenv("PROMETHEUS_URL", raising=False)
    return db_url


def attempt(capsys, argv: list[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's usage errors leave through SystemExit(2)
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


TYPOS = [
    (["ledgr", "acme"], "ledger"),
    (["topu", "acme", "5", "--reference", "r"], "topup"),
    (["ajust", "acme", "5", "--reason", "r", "--actor", "a"], "adjust"),
    (["verfy"], "verify"),
    (["stauts", "acme"], "status"),
    (["explian", "acme", "--month", "2026-11"], "explain"),
    (["cleanup-preveiw", "acme"], "cleanup-preview"),
    (["rnu", "--start", "2026-11-24T10:00Z", "--end", "2026-11-24T11:00Z"], "run"),
    (["dosc"], "docs"),
    (["db", "upgrde"], "upgrade"),
    (["ledger", "acme", "--limt", "3"], "--limit"),
    (["explain", "acme", "--mnth", "2026-11"], "--month"),
]


@pytest.mark.parametrize(("argv", "meant"), TYPOS, ids=[meant for _, meant in TYPOS])
def test_a_typo_suggests_what_was_meant(cli_db, capsys, argv, meant):
    code, out, err = attempt(capsys, argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1, err
    assert f"did you mean '{meant}'?" in err


UNKNOWN_ACCOUNT = [
    ["ledger", "acmee"],
    ["topup", "acmee", "5", "--reference", "r"],
    ["adjust", "acmee", "5", "--reason", "r", "--actor", "a"],
    ["status", "acmee"],
    ["explain", "acmee", "--month", "2026-11"],
    ["cleanup-preview", "acmee"],
]


@pytest.mark.parametrize("argv", UNKNOWN_ACCOUNT, ids=[a[0] for a in UNKNOWN_ACCOUNT])
def test_an_unknown_account_is_named(cli_db, capsys, argv):
    code, out, err = attempt(capsys, argv)
    assert (code, out) == (2, ""), err
    assert err.count("\n") == 1, err
    assert re.search(r"unknown account(\(s\))? 'acmee'", err) and "Traceback" not in err
    assert ledger_rows(cli_db) == []
    code, out, err = attempt(capsys, [*argv, "--json"])
    assert code == 2 and out == ""
    assert json.loads(err)["code"] == "unknown_account"


BAD_MONTHS = [
    ["explain", "acme", "--month", "2026-13"],
    ["explain", "acme", "--month", "November"],
    ["explain", "acme", "--month", "2026-1-1"],
]


@pytest.mark.parametrize("argv", BAD_MONTHS, ids=[a[-1] for a in BAD_MONTHS])
def test_a_bad_month_says_how_to_write_one(cli_db, capsys, argv):
    code, out, err = attempt(capsys, argv)
    assert (code, out) == (2, ""), err
    assert err.count("\n") == 1, err
    assert "YYYY-MM" in err


BAD_TIMES = [
    ["status", "acme", "--now", "yesterday"],
    ["cleanup-preview", "acme", "--now", "2026-11-31T00:00Z"],
    ["run", "--start", "soon", "--end", "2026-11-24T11:00Z"],
    ["run", "--start", "2026-11-24T10:00Z", "--end", "2026-11-24T25:00Z"],
]


@pytest.mark.parametrize("argv", BAD_TIMES, ids=["status-now", "cleanup-preview-now", "run-start", "run-end"])
def test_a_bad_time_says_how_to_write_one(cli_db, capsys, argv):
    code, out, err = attempt(capsys, argv)
    assert (code, out) == (2, ""), err
    assert err.count("\n") == 1, err
    assert "ISO 8601" in err or "e.g. 20" in err or "for example 20" in err, err


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["ledger", "acme", "--limit", "0"], "--limit must be positive"),
        (["ledger", "acme", "--before", "x"], "--before"),
        (["topup", "acme", "1e999999", "--reference", "r"], "1e999999"),
    ],
    ids=["limit", "before", "huge-amount"],
)
def test_bad_paging_and_amounts(cli_db, capsys, argv, words):
    code, out, err = attempt(capsys, argv)
    assert code == 2 and out == "" and words in err and err.count("\n") == 1, (argv, err)


def test_every_argument_of_every_command_has_help():
    parser = build_parser()
    missing = []
    subparsers = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")

    def walk(name, sub):
        if not sub.description:
            missing.append(f"{name}: no description")
        for action in sub._actions:
            if action.__class__.__name__ == "_SubParsersAction":
                for child_name, child in action.choices.items():
                    walk(f"{name} {child_name}", child)
            elif action.dest != "help" and not action.help:
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")

    for name, sub in subparsers.choices.items():
        walk(name, sub)
    assert not missing, "arguments without help: " + ", ".join(missing)
