"""The output layer: decimals, units in words, tables with headers, colour rules, `--json`
anywhere, `--version`, ledger paging, and `adjust` asking for `--yes` above a configurable amount."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timezone
from decimal import Decimal

import pytest

from billing_pipeline.cli.main import main, split_output_flags
from billing_pipeline.cli.output import colour_allowed, console, decimal_text, table, to_json, unit_words
from tests.support.platform import create_accounts, ledger_rows

# Pure functions: no database.


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("0"), "0.000000"),
        (Decimal("498.55875"), "498.558750"),
        (Decimal("0.44499998888888888222240"), "0.445000"),
        (Decimal("0.0000005"), "0.000000"),  # half-even: to the even neighbour
        (Decimal("0.0000015"), "0.000002"),
        (Decimal("-0.0000001"), "0.000000"),  # never "-0.000000"
        (Decimal("-12.5"), "-12.500000"),
        (Decimal("1E+3"), "1000.000000"),
    ],
)
def test_decimals_have_six_places(value, text):
    assert decimal_text(value) == text


def test_to_json_normalises_nested_values():
    @dataclass
    class Row:
        amount: Decimal
        at: datetime

    data = {
        "rows": [Row(Decimal("1.5"), datetime(2026, 11, 24, 10, tzinfo=UTC))],
        "n": 3,
        "ok": True,
        "pair": (Decimal("2"), None),
    }
    assert json.loads(to_json(data)) == {
        "rows": [{"amount": "1.500000", "at": "2026-11-24T10:00:00+00:00"}],
        "n": 3,
        "ok": True,
        "pair": ["2.000000", None],
    }


@pytest.mark.parametrize(
    ("unit", "quantity", "words"),
    [
        ("core_hour", Decimal("2.5"), "core-hours"),
        ("core_hour", Decimal("1"), "core-hour"),
        ("gib_hour", None, "GiB-hours"),
        ("gpu_hour", None, "GPU-hours"),
        ("gib", None, "GiB"),
        ("machine_hour", None, "machine-hours"),
        ("request_hour", None, "request-hours"),  # an id we do not know yet still reads as words
    ],
)
def test_units_in_words(unit, quantity, words):
    assert unit_words(unit, quantity) == words


@pytest.mark.parametrize(
    ("argv", "rest", "as_json"),
    [
        (["--json", "ledger", "acme"], ["ledger", "acme"], True),
        (["ledger", "--json", "acme"], ["ledger", "acme"], True),
        (["ledger", "acme", "-o", "json"], ["ledger", "acme"], True),
        (["-o", "json", "ledger", "acme"], ["ledger", "acme"], True),
        (["ledger", "acme", "-ojson"], ["ledger", "acme"], True),
        (["ledger", "acme", "-o", "text"], ["ledger", "acme"], False),
        (
            ["adjust", "acme", "1", "--reason", "--", "--json"],
            ["adjust", "acme", "1", "--reason", "--", "--json"],
            False,
        ),
    ],
)
def test_json_flag_anywhere(argv, rest, as_json):
    assert split_output_flags(argv) == (rest, as_json)


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_only_on_a_terminal_and_never_with_no_color(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert colour_allowed(_Tty()) and not colour_allowed(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not colour_allowed(_Tty())

    out = _Tty()
    console(out).print(table(["entry", ("amount", "right")], [[1, "+2.000000"]]))
    assert "\x1b[" not in out.getvalue()  # NO_COLOR: not one escape sequence
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("TERM", "xterm-256color")
    out = _Tty()
    console(out).print(table(["entry", ("amount", "right")], [[1, "+2.000000"]]))
    assert "\x1b[" in out.getvalue()  # a terminal: headers in bold
    piped = io.StringIO()
    console(piped).print(table(["entry", ("amount", "right")], [[1, "+2.000000"]]))
    assert "\x1b[" not in piped.getvalue() and "entry" in piped.getvalue()


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("billing 0.")


def test_help_describes_every_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("ledger", "topup", "adjust", "verify", "status", "explain", "cleanup-preview", "run", "docs"):
        assert f"\n    {command}" in out
    with pytest.raises(SystemExit):
        main(["ledger", "--help"])
    out = capsys.readouterr().out
    assert "--before ENTRY_ID" in out and "the account id" in out


# With a database.


@pytest.fixture
def acme(db_url):
    create_accounts(db_url, "acme")
    return db_url


def test_ledger_has_headers_pages_and_says_how_many(acme, capsys):
    for i in range(10):
        assert main(["topup", "acme", f"{i + 1}", "--reference", f"pay-{i}"]) == 0
    capsys.readouterr()

    assert main(["ledger", "acme", "--limit", "3"]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if "entry" in line)
    assert header.split()[:6] == ["entry", "time", "(UTC)", "type", "amount", "balance"]
    assert "Showing 3 of 10 entries, newest first." in out
    assert "+55.000000" in out  # the balance after the newest entry

    page = json.loads((main(["ledger", "acme", "--limit", "3", "--json"]), capsys.readouterr().out)[1])
    assert [e["amount"] for e in page["entries"]] == ["10.000000", "9.000000", "8.000000"]
    assert f"billing ledger acme --before {page['next_before']}" in out
    pages = [page]
    while pages[-1]["next_before"]:
        main(["ledger", "acme", "--limit", "3", "--before", str(pages[-1]["next_before"]), "--json"])
        pages.append(json.loads(capsys.readouterr().out))
    amounts = [e["amount"] for p in pages for e in p["entries"]]
    assert amounts == [f"{n}.000000" for n in range(10, 0, -1)]  # every entry once, newest first
    assert [p["shown"] for p in pages] == [3, 3, 3, 1]

    main(["ledger", "acme", "--limit", "3", "--before", str(pages[-2]["next_before"])])
    assert "Showing 1 of 10 entries older than entry" in capsys.readouterr().out


def test_adjust_above_the_limit_asks_for_yes(acme, capsys, monkeypatch):
    argv = ["adjust", "acme", "-1500", "--reason", "duplicate top-up", "--actor", "ops"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "above 1000 credits" in err and "--yes" in err and err.count("\n") == 1
    assert ledger_rows(acme) == []
    assert main([*argv, "--yes"]) == 0
    assert [r[3] for r in ledger_rows(acme)] == [Decimal("-1500")]
    capsys.readouterr()

    monkeypatch.setenv("BILLING_ADJUST_CONFIRM_ABOVE", "10")
    assert main(["adjust", "acme", "25", "--reason", "goodwill", "--actor", "ops"]) == 2
    assert "above 10 credits" in capsys.readouterr().err
    assert main(["adjust", "acme", "5", "--reason", "goodwill", "--actor", "ops"]) == 0
    monkeypatch.setenv("BILLING_ADJUST_CONFIRM_ABOVE", "lots")
    assert main(["adjust", "acme", "5", "--reason", "goodwill", "--actor", "ops", "--key", "k2"]) == 3
    assert "BILLING_ADJUST_CONFIRM_ABOVE='lots'" in capsys.readouterr().err
