"""Entry point of the `billing` command line.

Each command group lives in its own module with a ``register(subparsers, json_parent)`` function
that adds its subcommands; a subcommand sets ``handler`` to a function ``handler(args) -> int``.

What this module gives every command, so that no command module has to:
- ``--json`` or ``-o json`` anywhere on the line (before or after the subcommand);
- ``--version``; did-you-mean suggestions for a mistyped command or option, among the options
  of the command being parsed only; for an unknown account, the closest known one;
- a description for every command, help for the common arguments (``account``) when the
  module did not write one, and an "Examples:" epilog (``cli/examples.py``);
- the help of ``billing`` (or of a command group such as ``billing db``) when no command is
  given, on stdout with exit 0, as kubectl does;
- errors in plain words on stderr (``billing: ...``), or, in JSON mode, one JSON document
  ``{"error": "...", "code": "...", "exit_code": N}`` on stderr; never a traceback. Exit codes:
  0 success, 1 failure, 2 bad input or usage, 3 configuration, 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib
import json
import os
import re
import sys

from billing_pipeline.cli.examples import examples_text
from billing_pipeline.core.errors import BillingError, ConfigurationError, InputError

# The modules that contribute subcommands, in the order `billing --help` lists them.
COMMAND_MODULES = [
    "billing_pipeline.cli.db_commands",
    "billing_pipeline.cli.accounts_command",
    "billing_pipeline.cli.ledger_commands",
    "billing_pipeline.cli.grant_commands",
    "billing_pipeline.cli.status",
    "billing_pipeline.cli.explain",
    "billing_pipeline.cli.lifecycle_commands",
    "billing_pipeline.cli.run_command",
    "billing_pipeline.cli.invoice_commands",
    "billing_pipeline.cli.docs_command",
]

# Help for arguments many commands share, used where a command module gave none.
COMMON_ARGUMENT_HELP = {
    "account": "the account id (billing.accounts.id), e.g. acme",
    "now": "the clock to decide at, ISO 8601 (e.g. 2026-11-24T16:00Z); default: the current time",
    "month": "the UTC calendar month, YYYY-MM (e.g. 2026-11)",
}

OUTPUT_FORMATS = ("text", "json")

# The arguments being parsed, for suggestions argparse's messages do not carry.
_ARGV: list[str] = []


class UsageError(Exception):
    """The command line itself is wrong (argparse's errors): exit code 2."""

    def __init__(self, message: str, usage: str):
        super().__init__(message)
        self.usage = usage


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, except that an "Examples:" epilog keeps its lines as written."""

    def _fill_text(self, text, width, indent):
        paragraphs = []
        for paragraph in text.split("\n\n"):
            if paragraph.startswith(("Examples:", " ")):
                paragraphs.append("\n".join(indent + line if line else "" for line in paragraph.splitlines()))
            else:
                paragraphs.append(super()._fill_text(paragraph, width, indent))
        return "\n\n".join(paragraphs)


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # argparse's own usage errors: no traceback, a suggestion if we have one
        raise UsageError(_with_suggestion(self, message), self.format_usage())


def _with_suggestion(parser: argparse.ArgumentParser, message: str) -> str:
    """Add "did you mean ...?" to argparse's messages about an unknown command or option."""
    choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if choice and not re.match(r"argument -", message):  # a command, not an option's value
        wrong = choice[1]
        options = re.findall(r"'([^']*)'", choice[2])
        close = difflib.get_close_matches(wrong, options, n=1, cutoff=0.5)
        if close:
            return f"unknown command {wrong!r}: did you mean {close[0]!r}? (see {parser.prog} --help)"
        return f"unknown command {wrong!r}; choose from {', '.join(options)} (see {parser.prog} --help)"
    unknown = re.match(r"unrecognized arguments: (.*)", message)
    if unknown:
        # argparse reports a subcommand's unknown options at the top level: judge them against
        # the options of the command being parsed, never another command's.
        command, _ = command_parser(parser, _ARGV)
        for word in unknown[1].split():
            if word.startswith("-"):
                return _unknown_option(command, word.split("=")[0])
        return f"unexpected argument(s): {unknown[1]} (see {command.prog} --help)"
    if message.startswith("the following arguments are required"):
        # argparse checks required options before it reports unknown ones: a mistyped
        # `--mnth` shows up as a missing `--month`. Say which word was probably meant.
        known = own_options(parser)
        for word in _ARGV:
            option = word.split("=")[0]
            if option.startswith("--") and option not in known:
                return _unknown_option(parser, option)
    return f"{message} (see {parser.prog} --help)"


def _unknown_option(command: argparse.ArgumentParser, option: str) -> str:
    """An option ``command`` does not have: the closest of its own, else the list of them."""
    known = own_options(command)
    close = difflib.get_close_matches(option, known, n=1, cutoff=0.75)
    if close:
        return f"unknown option {option!r}: did you mean {close[0]!r}? (see {command.prog} --help)"
    return (
        f"{option!r} is not an option of '{command.prog}'; its options are {', '.join(known)} "
        f"(see {command.prog} --help)"
    )


def own_options(parser: argparse.ArgumentParser) -> list[str]:
    """The long options of ``parser`` itself (plus ``--json``/``-o``, which every command takes),
    in the order its help lists them."""
    found = [
        next((o for o in action.option_strings if o.startswith("--")), action.option_strings[0])
        for action in parser._actions
        if action.option_strings and action.help != argparse.SUPPRESS
    ]
    for common in ("--json", "--output-format"):
        if common not in found:
            found.append(common)
    return found


def command_parser(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[argparse.ArgumentParser, int]:
    """The parser of the (sub)command ``argv`` names, and how many words of ``argv`` named it.

    Follows the words that name subcommands (``db upgrade``), skipping options before them;
    stops at the first word that is not a subcommand of the parser reached."""
    current, used = parser, 0
    for i, word in enumerate(argv):
        if word == "--":
            break
        if word.startswith("-"):
            continue
        subparsers = _subparsers_of(current)
        if subparsers is None or word not in subparsers.choices:
            break
        current, used = subparsers.choices[word], i + 1
    return current, used


def _subparsers_of(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("satusky-billing")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0+unknown"


class _VersionAction(argparse.Action):
    """``--version``, reading the installed version only when asked (importlib.metadata is slow)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings=option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"billing {_version()}")
        parser.exit()


def _complete_help(parser: argparse.ArgumentParser, path: str = "") -> None:
    """Give every subcommand a description, every common argument a help text and every
    command its examples (``cli/examples.py``) when its module wrote none."""
    if parser.epilog is None or "Examples:" not in parser.epilog:
        examples = examples_text(path)
        if examples:
            parser.epilog = examples if parser.epilog is None else f"{examples}\n\n{parser.epilog}"
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {choice.dest: choice.help for choice in action._choices_actions}
        for name, sub in action.choices.items():
            if sub.description is None and helps.get(name):
                sub.description = helps[name][0].upper() + helps[name][1:] + "."
            for arg in sub._actions:
                if arg.help is None and arg.dest in COMMON_ARGUMENT_HELP:
                    arg.help = COMMON_ARGUMENT_HELP[arg.dest]
            _complete_help(sub, f"{path} {name}".strip())


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="billing",
        description="Satusky prepaid-credit billing: the ledger, balances, explanations and the hourly cycle.",
        epilog="Add --json (or -o json) anywhere for one JSON document on stdout; errors then come as JSON on "
        "stderr. Shapes: docs/cli.md. Configuration: BILLING_DATABASE_URL, PROMETHEUS_URL, KUBECONFIG, "
        "STRIPE_API_KEY.",
    )
    parser.add_argument("--version", action=_VersionAction, help="print the version and exit")
    parser.add_argument("--json", action="store_true", help="print one JSON document (also: -o json)")
    parser.add_argument(
        "-o",
        "--output-format",
        dest="output_format",
        choices=OUTPUT_FORMATS,
        help="text (default) or json; may also come after the command",
    )
    json_parent = argparse.ArgumentParser(add_help=False)
    json_parent.add_argument(
        "--json", action="store_true", help="print one JSON document on stdout (also: -o json, anywhere on the line)"
    )
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers, json_parent)
    _complete_help(parser)
    return parser


def split_output_flags(argv: list[str]) -> tuple[list[str], bool]:
    """Take ``--json`` / ``-o json`` / ``--output-format json`` out of ``argv`` wherever they are.

    Returns the remaining arguments and whether JSON was asked for. Arguments after ``--`` are
    left alone. An ``-o`` with another value than text/json is left for argparse to refuse.
    """
    rest: list[str] = []
    want_json = False
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            rest += argv[i:]
            break
        if word == "--json":
            want_json = True
        elif word in ("-o", "--output-format") and i + 1 < len(argv) and argv[i + 1] in OUTPUT_FORMATS:
            want_json = argv[i + 1] == "json"
            i += 1
        elif word in ("-ojson", "-otext", "--output-format=json", "--output-format=text", "-o=json", "-o=text"):
            want_json = word.endswith("json")
        else:
            rest.append(word)
        i += 1
    return rest, want_json


def error_code(exc: BaseException) -> str:
    """A stable, machine-readable name for a failure (the ``code`` of a JSON error)."""
    explicit = getattr(exc, "code", None)
    if isinstance(explicit, str):
        return explicit
    if isinstance(exc, UsageError):
        return "usage"
    message = str(exc)
    if isinstance(exc, InputError):
        if "unknown account" in message:
            return "unknown_account"
        return "invalid_input"
    if isinstance(exc, ConfigurationError):
        return "configuration"
    if isinstance(exc, BillingError):
        return "failed"
    if _is_database_error(exc):
        return "database"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    return "internal"


def _is_database_error(exc: BaseException) -> bool:
    """A psycopg error, without importing psycopg: `billing --help` starts without it, and an
    error of psycopg's can only come from a command that imported it."""
    psycopg = sys.modules.get("psycopg")
    return psycopg is not None and isinstance(exc, psycopg.Error)


def report_error(message: str, code: str, exit_code: int, *, as_json: bool) -> int:
    """Print one error on stderr (one JSON document in JSON mode) and return the exit code."""
    if as_json:
        print(json.dumps({"error": message, "code": code, "exit_code": exit_code}, ensure_ascii=False), file=sys.stderr)
    else:
        # One line, whatever went wrong: scripts can grep it, people read it at a glance.
        print(f"billing: {message}" if code != "usage" else f"billing: error: {message}", file=sys.stderr)
    return exit_code


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    argv, want_json = split_output_flags(argv)
    _ARGV[:] = argv
    parser = build_parser()
    command, used = command_parser(parser, argv)
    if _subparsers_of(command) is not None and not argv[used:]:
        # `billing` (or `billing db`) alone: the help, on stdout, exit 0, as kubectl does.
        command.print_help()
        return 0
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        # argparse's convention: usage errors leave through SystemExit(2).
        raise SystemExit(report_error(str(exc), "usage", 2, as_json=want_json)) from None
    args.json = bool(want_json or getattr(args, "json", False) or getattr(args, "output_format", None) == "json")
    try:
        return args.handler(args) or 0
    except BillingError as exc:
        message, code = str(exc), error_code(exc)
        if code == "unknown_account" and getattr(args, "account", None) and "did you mean" not in message.lower():
            from billing_pipeline.cli.inputs import unknown_account_hint

            hint = unknown_account_hint(args.account)
            if hint:
                message = f"{message if message.endswith(('.', '?')) else message + '.'} {hint}"
        return report_error(message, code, exc.exit_code, as_json=args.json)
    except KeyboardInterrupt:
        return report_error("interrupted", "interrupted", 130, as_json=args.json)
    except BrokenPipeError:  # `billing ledger acme | head`: the reader left; nothing to report
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")
        return 0
    except (SystemExit, GeneratorExit):
        raise
    except Exception as exc:
        if _is_database_error(exc):
            # A database error we did not anticipate: still one readable line, no traceback.
            return report_error(f"database error: {str(exc).strip()}", "database", 1, as_json=args.json)
        # A bug: still no traceback for the user, but what and where.
        return report_error(
            f"internal error ({type(exc).__name__}): {exc}. This is a bug; please report it with the command you ran.",
            "internal",
            1,
            as_json=args.json,
        )


def console_entry() -> None:
    """The ``billing`` executable: ``main()``, then a quick exit.

    Why: after ``billing run`` the process holds Dagster's definitions, dbt's manifest and both
    libraries' modules, and Python's own shutdown takes them apart object by object: 1.3 s of a
    3-account hourly run measured (issue 24), after the last line was printed. Nothing of ours
    needs that teardown: what the interpreter does at exit that matters is done here first (the
    remaining non-daemon threads joined, the ``atexit`` handlers run, logging's flush among them,
    stdout and stderr flushed), then the process leaves with ``os._exit``. Database connections
    are closed by their context managers before ``main`` returns. Tests call ``main`` itself."""
    import atexit
    import threading

    try:
        code = main()
    except SystemExit as exc:  # argparse's usage errors and --help leave this way
        code = exc.code
    if code is None:
        code = 0
    elif not isinstance(code, int):  # sys.exit("message"): printed, exit status 1
        print(code, file=sys.stderr)
        code = 1
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a reader that left (a pipe closed) is not an error now
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    console_entry()
