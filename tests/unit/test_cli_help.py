"""The command line as a newcomer first meets it, without a database: help on a bare `billing`,
Examples in every command's help (each one a command line the parser accepts), option
suggestions scoped to the command being parsed, and a start that imports none of the heavy
libraries (Dagster, dbt, Alembic, WeasyPrint, Kubernetes, Stripe).

The import check runs in this process: the CLI's modules are unloaded, an import hook refuses
the heavy packages, and everything is put back afterwards (tests/integration/test_cli_startup.py
checks the same from a fresh interpreter, the way a shell starts `billing`).
"""

from __future__ import annotations

import argparse
import importlib.abc
import shlex
import sys

import pytest

from billing_pipeline.cli import main as cli_main
from billing_pipeline.cli.examples import EXAMPLES
from billing_pipeline.cli.main import build_parser, command_parser, main

HEAVY = ("dagster", "dagster_dbt", "dagster_postgres", "dbt", "weasyprint", "kubernetes", "stripe", "alembic")
NOT_FOR_HELP = (*HEAVY, "sqlalchemy", "psycopg", "rich", "yaml")


def attempt(capsys, argv):
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def commands(parser: argparse.ArgumentParser, path: str = ""):
    """Every (sub)command as (path, parser), groups included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{path} {name}".strip(), sub
                yield from commands(sub, f"{path} {name}".strip())


# --- help ------------------------------------------------------------------------------------


def test_a_bare_billing_prints_the_help_on_stdout_and_exits_0(capsys):
    code, out, err = attempt(capsys, [])
    assert (code, err) == (0, "")
    assert out == build_parser().format_help()
    assert out.startswith("usage: billing ") and "\nExamples:\n  # The accounts, their state and balance\n" in out


def test_a_bare_command_group_prints_its_help(capsys):
    code, out, err = attempt(capsys, ["db"])
    assert (code, err) == (0, "")
    assert out.startswith("usage: billing db ") and "  billing db upgrade\n" in out


def test_every_command_has_examples_in_its_help():
    parser = build_parser()
    found = dict(commands(parser))
    assert {"accounts", "db", "db upgrade", "status", "explain", "invoice", "close-month", "run"} <= set(found)
    missing = [path for path, sub in found.items() if "\nExamples:\n  # " not in sub.format_help()]
    assert missing == [], f"add examples to billing_pipeline/cli/examples.py for: {missing}"
    assert "\nExamples:\n  # " in parser.format_help()


def test_every_example_is_a_command_line_the_parser_accepts():
    parser = build_parser()
    checked = 0
    for path, examples in EXAMPLES.items():
        for line, _ in examples:
            if "|" in line or "COMMAND" in line:
                continue  # a pipe into jq, or the placeholder of the top-level help
            words = shlex.split(line)
            assert words[0] == "billing" and " ".join(words[1 : 1 + len(path.split())]) == path, line
            args = parser.parse_args(cli_main.split_output_flags(words[1:])[0])
            assert callable(getattr(args, "handler", None)), line
            checked += 1
    assert checked >= 25


def test_examples_keep_their_lines_and_the_rest_is_wrapped(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")  # argparse wraps to the terminal's width
    text = build_parser().format_help()
    assert "  # A command's arguments and examples\n  billing COMMAND --help\n\nAdd --json" in text
    assert all(len(line) <= 80 for line in text.splitlines() if not line.startswith("  billing"))


# --- did-you-mean, scoped to the command ------------------------------------------------------


def test_an_option_of_another_command_is_not_suggested(capsys):
    code, out, err = attempt(capsys, ["status", "acme", "--month", "2026-11"])
    assert (code, out) == (2, "")
    assert err == (
        "billing: error: '--month' is not an option of 'billing status'; its options are --help, --json, "
        "--now, --output-format (see billing status --help)\n"
    )


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["explain", "acme", "--mnth", "2026-11"], "unknown option '--mnth': did you mean '--month'? "),
        (["ledger", "acme", "--limt", "3"], "unknown option '--limt': did you mean '--limit'? "),
        (["status", "acme", "--nwo", "2026-11-24T10:00Z"], "unknown option '--nwo': did you mean '--now'? "),
        (["invoice", "acme", "--month", "2026-11", "--pfd", "x.pdf"], "did you mean '--pdf'? "),
        (["accounts", "--jsn"], "did you mean '--json'? "),
        (["explain", "acme", "--month", "2026-11", "--now", "x"], "'--now' is not an option of 'billing explain'"),
        (["invoice", "acme", "--month", "2026-11", "--detail"], "'--detail' is not an option of 'billing invoice'"),
        (["accounts", "acme"], "unexpected argument(s): acme (see billing accounts --help)"),
    ],
)
def test_suggestions_come_from_the_command_being_parsed(capsys, argv, said):
    code, out, err = attempt(capsys, argv)
    assert (code, out) == (2, "") and err.count("\n") == 1, err
    assert said in err


def test_the_command_parser_follows_subcommand_words():
    parser = build_parser()
    assert command_parser(parser, ["db", "upgrade", "--create"])[0].prog == "billing db upgrade"
    assert command_parser(parser, ["--json", "status", "acme"]) == (command_parser(parser, ["status"])[0], 2)
    assert command_parser(parser, ["stauts", "acme"]) == (parser, 0)


# --- start-up: no heavy import ----------------------------------------------------------------


class _Refuse(importlib.abc.MetaPathFinder):
    def __init__(self, refused: tuple[str, ...]):
        self.refused, self.asked = refused, []

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in self.refused:
            self.asked.append(fullname)
            raise ImportError(f"{fullname} must not be imported here")
        return None


@pytest.fixture
def fresh_import():
    """Unload the product and the refused packages, refuse them, and put everything back after."""
    saved = dict(sys.modules)

    def start(refused: tuple[str, ...]) -> _Refuse:
        for name in list(sys.modules):
            if name.split(".")[0] in (*refused, "billing_pipeline"):
                del sys.modules[name]
        finder = _Refuse(refused)
        sys.meta_path.insert(0, finder)
        return finder

    yield start
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _Refuse)]
    sys.modules.clear()
    sys.modules.update(saved)


def test_building_the_parser_imports_no_heavy_library(fresh_import, capsys):
    finder = fresh_import(NOT_FOR_HELP)
    fresh = importlib.import_module("billing_pipeline.cli.main")
    assert fresh is not cli_main
    with pytest.raises(SystemExit) as exit_:
        fresh.main(["--help"])
    assert exit_.value.code == 0
    fresh.build_parser().format_help()
    assert finder.asked == []
    assert "Examples:" in capsys.readouterr().out


def test_status_imports_no_dagster_on_its_way_to_the_database(fresh_import, capsys, monkeypatch):
    """`billing status` loads what it needs to read the database (psycopg, the lifecycle report),
    nothing of Dagster, dbt or Kubernetes: without BILLING_DATABASE_URL it stops at the
    configuration error (exit 3), after every import of its handler."""
    monkeypatch.delenv("BILLING_DATABASE_URL", raising=False)
    finder = fresh_import(HEAVY)
    fresh = importlib.import_module("billing_pipeline.cli.main")
    assert fresh.main(["status", "acme"]) == 3
    assert "BILLING_DATABASE_URL is not set" in capsys.readouterr().err
    assert "billing_pipeline.lifecycle.report" in sys.modules
    assert finder.asked == []
