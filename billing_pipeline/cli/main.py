"""Entry point of the `billing` command line.

Each command group lives in its own module with a ``register(subparsers)`` function that adds
its subcommands; a subcommand sets ``handler`` to a function ``handler(args) -> int``. Every
command accepts ``--json``. Errors are printed on stderr in plain words, never as a traceback,
with a non-zero exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys

import psycopg

from billing_pipeline.errors import BillingError

# The modules that contribute subcommands, in the order `billing --help` lists them.
COMMAND_MODULES = [
    "billing_pipeline.cli.db_commands",
    "billing_pipeline.cli.ledger_commands",
    "billing_pipeline.cli.status",
    "billing_pipeline.cli.explain",
    "billing_pipeline.cli.lifecycle_commands",
    "billing_pipeline.cli.run_command",
    "billing_pipeline.cli.invoice_commands",
    "billing_pipeline.cli.docs_command",
]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own usage errors: exit 2, no traceback
        self.print_usage(sys.stderr)
        self.exit(2, f"billing: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="billing", description="Satusky prepaid-credit billing.")
    json_parent = argparse.ArgumentParser(add_help=False)
    json_parent.add_argument("--json", action="store_true", help="print machine-readable JSON")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers, json_parent)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args) or 0
    except BillingError as exc:
        print(f"billing: {exc}", file=sys.stderr)
        return exc.exit_code
    except psycopg.Error as exc:
        # A database error we did not anticipate: still one readable line, no traceback.
        print(f"billing: database error: {str(exc).strip()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("billing: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
