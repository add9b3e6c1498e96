"""The command line only parses arguments, calls domain functions and prints: no module in
billing_pipeline/cli/ holds SQL or talks to a database cursor itself. Queries live in the domain
packages (ledger/queries.py, invoicing/statement.py, lifecycle/report.py, …), where they are
named, typed and tested once.

The check reads the source (ast), so it needs no services and catches a query the moment it is
written, whether or not a test runs that command.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

CLI = Path(__file__).resolve().parents[2] / "billing_pipeline" / "cli"

# Statement-shaped text, not the words in help texts ("the account id (billing.accounts.id)").
# SQL keywords are matched in capitals, as the project writes them, plus the shapes that only
# a statement has in any case.
SQL_SHAPES = [
    re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|WITH|MERGE|TRUNCATE|COPY)\b"),  # a statement's first word
    re.compile(r"\bSELECT\b[\s\S]*\bFROM\b"),
    re.compile(r"\bINSERT\s+INTO\b", re.IGNORECASE),
    re.compile(r"\bDELETE\s+FROM\b", re.IGNORECASE),
    re.compile(r"\bUPDATE\s+[\w.\"]+\s+SET\b", re.IGNORECASE),
    re.compile(r"\bselect\b[\s\S]*\bfrom\s+(billing|analytics|public)\.\w+", re.IGNORECASE),
]
DATABASE_CALLS = {"execute", "executemany", "cursor"}


def _string_text(node: ast.AST) -> str | None:
    """The text of a string literal; an f-string's parts with ``{}`` where values go."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(part.value if isinstance(part, ast.Constant) else "{}" for part in node.values)
    return None


def layering_violations(source: str, filename: str = "<source>") -> list[str]:
    """Every SQL string and every ``.execute(`` / ``.executemany(`` / ``.cursor(`` call in ``source``."""
    tree = ast.parse(source, filename)
    inside_fstring = {id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in node.values}
    found = []
    for node in ast.walk(tree):
        if id(node) in inside_fstring:
            continue  # judged as part of its whole f-string
        text = _string_text(node)
        if text is not None and any(shape.search(text) for shape in SQL_SHAPES):
            found.append(f"{filename}:{node.lineno}: SQL {text.strip()[:60]!r}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in DATABASE_CALLS:
            found.append(f"{filename}:{node.lineno}: calls .{node.func.attr}(")
    return found


CLI_MODULES = sorted(CLI.glob("*.py"))


def test_the_cli_package_is_where_we_look():
    names = {p.name for p in CLI_MODULES}
    assert {"main.py", "explain.py", "ledger_commands.py", "status.py", "invoice_commands.py"} <= names


@pytest.mark.parametrize("module", CLI_MODULES, ids=lambda p: p.name)
def test_cli_module_holds_no_sql_and_no_database_calls(module: Path):
    violations = layering_violations(module.read_text(), module.name)
    assert not violations, (
        "the CLI only parses and prints; move these queries into a domain module "
        "(e.g. billing_pipeline/ledger/queries.py) and call it:\n  " + "\n  ".join(violations)
    )


# What the CLI held before the queries moved out: each must be caught.
@pytest.mark.parametrize(
    "source",
    [
        'total = conn.execute("SELECT count(*) FROM billing.credit_transactions WHERE account_id = %s", (a,))',
        'rows = conn.execute(f"SELECT {cols} FROM billing.credit_transactions WHERE account_id = %s", (a,))',
        'QUERY = """\nSELECT usage_kind, resource\nFROM analytics.fct_priced_usage\nWHERE account_id = %(account)s\n"""',
        "Q = \"SELECT to_regclass('analytics.fct_priced_usage')\"",
        'Q = "WITH t AS (SELECT 1) SELECT * FROM t"',
        'Q = "insert into billing.accounts (id) values (%s)"',
        'Q = "update billing.accounts set name = %s where id = %s"',
        'Q = "delete from billing.accounts where id = %s"',
        'Q = "select id from billing.accounts"',
        'Q = ("SELECT id " "FROM billing.accounts")',
        "with connect() as conn:\n    cur = conn.cursor()",
        "cur.executemany(q, rows)",
    ],
)
def test_the_check_catches_sql_and_database_calls(source: str):
    assert layering_violations(source)


# Words the CLI legitimately prints: none of them is a query.
@pytest.mark.parametrize(
    "source",
    [
        'help = "the account id (billing.accounts.id), e.g. acme"',
        'help = "select the month to explain, YYYY-MM"',
        'msg = "Update the database schema with `billing db upgrade`."',
        'msg = f"Showing {n} of {total} entries{where}, newest first."',
        'text = "Deleted from the cluster: nothing; run the cleanup to delete"',
        "data = month_statement(conn, account, start, end)",
    ],
)
def test_the_check_leaves_ordinary_words_alone(source: str):
    assert layering_violations(source) == []
