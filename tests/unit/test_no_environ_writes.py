"""Settings reach the code once, when the definitions bind them (``dg.EnvVar``), or are read
where they are used: no module of billing_pipeline writes ``os.environ`` to pass a value to
another layer. The scan reads every module's syntax tree, so a new write fails here.

One write stays, named below with its reason: dbt reads its connection (DBT_PG_*) and the
partition window from the environment only (dbt's own ``get_env()`` copies ``os.environ`` at
each in-process invocation; dagster-dbt's subprocess inherits it), so that one helper sets them
for the length of one dbt call and restores them.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "billing_pipeline"
ALLOWED = {("transform/project.py", "temporary_environment")}
MUTATORS = {"setdefault", "update", "pop", "popitem", "clear", "__setitem__", "__delitem__"}


def _is_environ(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
        isinstance(node, ast.Name) and node.id == "environ"
    )


def environ_writes(source: str) -> list[tuple[int, str]]:
    """(line, enclosing function) of every write to os.environ in ``source``."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST, function: str) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            function = node.name
        write = False
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store | ast.Del) and _is_environ(node.value):
            write = True
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in MUTATORS and _is_environ(node.func.value):
                write = True
            if node.func.attr in ("putenv", "unsetenv"):
                write = True
        if isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Subscript):
            write = write or _is_environ(node.target.value)
        if write:
            found.append((node.lineno, function))
        for child in ast.iter_child_nodes(node):
            visit(child, function)

    visit(ast.parse(source), "<module>")
    return found


def test_no_module_writes_os_environ_but_the_one_dbt_helper():
    writes = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        for line, function in environ_writes(path.read_text()):
            if (relative, function) not in ALLOWED:
                writes.append(f"billing_pipeline/{relative}:{line} in {function}")
    assert writes == []


def test_the_scan_sees_every_kind_of_write():
    source = """
import os
from os import environ
os.environ["A"] = "1"
os.environ.setdefault("B", "2")
os.environ.update({"C": "3"})
def f():
    os.environ.pop("D", None)
    del os.environ["E"]
    environ["F"] = "6"
    os.putenv("G", "7")
value = os.environ["H"]
other = os.environ.get("I")
"""
    assert environ_writes(source) == [
        (4, "<module>"),
        (5, "<module>"),
        (6, "<module>"),
        (8, "f"),
        (9, "f"),
        (10, "f"),
        (11, "f"),
    ]
