"""Every property test is seeded: the suite's hypothesis profile derives examples from the test
itself (``derandomize=True``, registered in tests/conftest.py), and no test turns that off or
loads another profile. Read with ``ast``: nothing is imported or run."""

from __future__ import annotations

import ast
from pathlib import Path

from hypothesis import settings

TESTS = Path(__file__).resolve().parents[1]


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and (getattr(node.func, "id", None) == name or getattr(node.func, "attr", None) == name)
    ]


def test_the_active_profile_is_derandomized():
    assert settings.default.derandomize is True
    assert settings.default.database is None  # no example database replaying another run's finds


def test_no_property_test_unseeds_itself_or_loads_another_profile():
    offenders = []
    for path in sorted(TESTS.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for call in _calls(tree, "settings"):
            for keyword in call.keywords:
                if keyword.arg == "derandomize" and not (
                    isinstance(keyword.value, ast.Constant) and keyword.value.value is True
                ):
                    offenders.append(f"{path.relative_to(TESTS)}:{call.lineno}: derandomize is not True")
        if path.name != "conftest.py" or path.parent != TESTS:
            offenders += [
                f"{path.relative_to(TESTS)}:{c.lineno}: loads a profile" for c in _calls(tree, "load_profile")
            ]
        offenders += [  # hypothesis' @seed(n) would pin one test to a random-looking seed of its own
            f"{path.relative_to(TESTS)}:{d.lineno}: @seed"
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef)
            for d in node.decorator_list
            if isinstance(d, ast.Call) and getattr(d.func, "id", None) == "seed"
        ]
    assert offenders == []


def test_the_property_tests_are_found():
    # The scan above is only worth something if it sees the property tests it guards.
    given = [p for p in TESTS.rglob("*.py") if _calls(ast.parse(p.read_text()), "given")]
    assert len(given) >= 4, given
