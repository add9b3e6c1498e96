"""The product reads the wall clock in one place (``core.clock.system_now``), and only a test can
stop it there: no command, environment variable or flag sets it. No services needed."""

from __future__ import annotations

import ast
from datetime import UTC, datetime, timedelta
from pathlib import Path

from billing_pipeline.core import clock

PACKAGE = Path(__file__).resolve().parents[2] / "billing_pipeline"
CLOCK_MODULE = PACKAGE / "core" / "clock.py"


def _wall_clock_reads(tree: ast.AST) -> list[int]:
    """Lines calling ``datetime.now(...)``, ``datetime.utcnow()``, ``date.today()`` or ``datetime.today()``."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", None)
            if (name, node.func.attr) in {
                ("datetime", "now"),
                ("datetime", "utcnow"),
                ("datetime", "today"),
                ("date", "today"),
            }:
                lines.append(node.lineno)
    return lines


def test_only_the_clock_module_reads_the_calendar():
    found = {
        f"{path.relative_to(PACKAGE.parent)}:{line}"
        for path in PACKAGE.rglob("*.py")
        if path != CLOCK_MODULE
        for line in _wall_clock_reads(ast.parse(path.read_text(), str(path)))
    }
    assert found == set(), "call billing_pipeline.core.clock.system_now() instead"
    assert _wall_clock_reads(ast.parse(CLOCK_MODULE.read_text())) != []  # the check does find a read


def test_nothing_in_the_product_can_stop_the_clock():
    # The frozen time is a private module variable: no product module mentions it but the clock's
    # own, and the clock module reads no environment variable.
    mentions = [p for p in PACKAGE.rglob("*.py") if p != CLOCK_MODULE and "_frozen_at" in p.read_text()]
    assert mentions == []
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(ast.parse(CLOCK_MODULE.read_text()))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    } | {
        node.module.split(".")[0]
        for node in ast.walk(ast.parse(CLOCK_MODULE.read_text()))
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert not imported & {"os", "sys", "argparse"}  # reads no environment, argument or flag
    assert clock._frozen_at is None  # outside a test that froze it


def test_system_now_is_the_wall_clock_unless_a_test_froze_it(frozen_clock):
    before = datetime.now(UTC)
    now = clock.system_now()
    assert now.tzinfo is not None and before <= now <= datetime.now(UTC)

    at = frozen_clock.set("2028-02-29T12:00:00Z")
    assert at == datetime(2028, 2, 29, 12, tzinfo=UTC)
    assert clock.system_now() == at == frozen_clock.now()
    frozen_clock.set(at + timedelta(days=1))
    assert clock.system_now() == datetime(2028, 3, 1, 12, tzinfo=UTC)
    assert clock.run_clock(None) == datetime(2028, 3, 1, 12, tzinfo=UTC)  # a run without --now
