"""The `billing` command line: results in words and JSON, clear errors, non-zero exits, no tracebacks."""

from __future__ import annotations

import json
from decimal import Decimal

import psycopg
import pytest

from billing_pipeline.cli.main import main
from tests.support.platform import create_accounts, ledger_rows


@pytest.fixture
def cli_db(db_url):
    create_accounts(db_url, "acme")
    return db_url


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def test_db_upgrade_is_safe_to_run_twice(db_url, capsys):
    for _ in range(2):
        code, out, _ = run(capsys, "db", "upgrade", "--json")
        assert code == 0 and json.loads(out)["revision"]


def test_topup_twice_with_one_reference_posts_once_and_says_so(cli_db, capsys):
    code, out, _ = run(capsys, "topup", "acme", "25.50", "--reference", "pay-1")
    assert code == 0 and "Posted topup of +25.500000 credits to acme" in out
    code, out, _ = run(capsys, "topup", "acme", "25.50", "--reference", "pay-1", "--json")
    assert code == 0 and json.loads(out)["created"] is False
    assert ledger_rows(cli_db) == [("acme", 1, "topup", Decimal("25.5"), Decimal("25.5"), "topup:pay-1")]


def test_adjust_repeated_posts_once_and_a_new_key_posts_again(cli_db, capsys):
    args = ("adjust", "acme", "-3", "--reason", "refund of a duplicated deploy", "--actor", "alice")
    assert run(capsys, *args)[0] == 0
    assert "Already posted" in run(capsys, *args)[1]
    assert run(capsys, *args, "--key", "second-refund")[0] == 0
    assert [r[3] for r in ledger_rows(cli_db)] == [Decimal("-3"), Decimal("-3")]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("topup", "acme", "abc", "--reference", "r"), "'abc' is not a number"),
        (("topup", "acme", "NaN", "--reference", "r"), "not a finite number"),
        (("topup", "acme", "-5", "--reference", "r"), "must be positive"),
        (("topup", "nobody", "5", "--reference", "r"), "unknown account"),
        (("adjust", "acme", "5", "--reason", " ", "--actor", "bob"), "needs a reason"),
        (("ledger", "nobody"), "unknown account 'nobody'"),
        (("status", "nobody"), "unknown account 'nobody'"),
    ],
)
def test_bad_input_fails_with_a_clear_message_and_writes_nothing(cli_db, capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert message in err and err.startswith("billing: ")
    assert ledger_rows(cli_db) == []


def test_missing_required_option_is_a_usage_error(cli_db, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["adjust", "acme", "5", "--reason", "x"])
    assert exit_info.value.code == 2
    assert "--actor" in capsys.readouterr().err


def test_unreachable_database_is_explained_without_secrets(capsys, monkeypatch):
    monkeypatch.setenv("BILLING_DATABASE_URL", "postgresql://billing:s3cret@127.0.0.1:1/nowhere")
    code, _, err = run(capsys, "verify")
    assert code == 3
    assert "Cannot connect to the billing database at postgresql://billing:***@127.0.0.1:1/nowhere" in err
    assert "s3cret" not in err


def test_ledger_status_and_verify(cli_db, capsys, frozen_clock):
    frozen_clock.set("2026-11-24T12:00:00Z")  # entries and `status` (no --now) on the test's clock
    run(capsys, "topup", "acme", "12", "--reference", "p1")
    run(capsys, "adjust", "acme", "-4.5", "--reason", "goodwill reversed", "--actor", "ops")
    code, out, _ = run(capsys, "ledger", "acme", "--json")
    ledger = json.loads(out)
    assert code == 0 and ledger["balance"] == "7.500000"
    assert [e["type"] for e in ledger["entries"]] == ["admin_adjustment", "topup"]
    code, out, _ = run(capsys, "status", "acme", "--json")
    assert json.loads(out)["state"] == "low_balance"  # 7.5 is under the threshold of 10
    code, out, _ = run(capsys, "verify")
    assert code == 0 and "Ledger verified: 2 entries in 1 accounts" in out

    with psycopg.connect(cli_db) as conn:
        conn.execute("UPDATE billing.credits SET balance = 1000 WHERE account_id = 'acme'")
    code, out, _ = run(capsys, "verify", "--json")
    report = json.loads(out)
    assert code == 1 and not report["ok"]
    assert report["problems"][0]["kind"] == "cache_balance"
