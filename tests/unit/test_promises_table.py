"""docs/promises.md maps README promises to tests, both ways, so neither can rot.

The README marks each promise where it makes it, in its source: ``<!-- promise: <test name> -->``
(invisible on the rendered page), naming the test that proves it. Every marked promise must have
its row in docs/promises.md, every row's test must be marked in the README, and every test a row
names must exist (read with ``ast``: nothing is imported or run)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TABLE = REPO / "docs" / "promises.md"
README = REPO / "README.md"
# A promise marked in the README's source, naming the test that proves it.
PROMISE_MARK = re.compile(r"<!-- promise: (\w+) -->")
# Promises an audit found without a row (issue 20): each must stay marked.
AUDITED_PROMISES = ("never one query per pod", "every column documented")
# A cell naming a test: `tests/<file>.py::<function>`
TEST_REFERENCE = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def table_rows() -> list[tuple[str, str, str]]:
    """(promise, file, function) for every row of the tables."""
    rows = []
    for line in TABLE.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) != 2 or set(cells[1]) <= {"-", " "} or cells[1] == "test":
            continue
        found = TEST_REFERENCE.fullmatch(cells[1])
        assert found, f"docs/promises.md: the row {cells[0]!r} does not name one test as `tests/<file>.py::<test>`"
        rows.append((cells[0], found[1], found[2]))
    return rows


def readme_promises(text: str) -> list[tuple[int, str]]:
    """(line number, test name) for every promise marked in the README's source."""
    return [
        (number, name) for number, line in enumerate(text.splitlines(), start=1) for name in PROMISE_MARK.findall(line)
    ]


def unmatched(readme_text: str, rows: list[tuple[str, str, str]]) -> tuple[list[str], list[str]]:
    """(marked promises without a row, rows whose test no README promise names)."""
    marked = readme_promises(readme_text)
    row_tests = {function for _, _, function in rows}
    marked_tests = {name for _, name in marked}
    no_row = [
        f"README.md line {number}: promise proved by {name} has no row"
        for number, name in marked
        if name not in row_tests
    ]
    no_promise = [
        f"{promise!r} ({function}): no README promise is marked with it"
        for promise, _, function in rows
        if function not in marked_tests
    ]
    return no_row, no_promise


def defined_tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return {
        node.name
        for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_")
    }


def test_every_promise_names_a_test_that_exists():
    rows = table_rows()
    assert len(rows) >= 60  # the table was not emptied or mangled into unparsed lines
    missing = []
    for promise, file, function in rows:
        path = REPO / file
        if not path.is_file():
            missing.append(f"{promise!r}: {file} does not exist")
        elif function not in defined_tests(path):
            missing.append(f"{promise!r}: {file} has no test {function}")
    assert missing == [], "docs/promises.md names tests that do not exist:\n" + "\n".join(missing)


def test_the_table_covers_every_section_of_the_readme_it_promises_for():
    headings = re.findall(r"^## (.+)$", TABLE.read_text(), flags=re.M)
    assert headings == [
        "The ledger's guarantees",
        "Reliability and security",
        "Account lifecycle",
        "Month-end",
        "Credit grants",
        "Command line",
        "Ingestion, transform, deduction",
        "Layout",
    ]


def test_every_readme_promise_has_a_row_and_every_row_a_promise():
    rows = table_rows()
    functions = [function for _, _, function in rows]
    assert len(set(functions)) == len(functions), "docs/promises.md: a test named by two rows"
    assert len(readme_promises(README.read_text())) >= len(rows)  # the markers were not stripped
    no_row, no_promise = unmatched(README.read_text(), rows)
    assert no_row == [], "add a row to docs/promises.md for each:\n" + "\n".join(no_row)
    assert no_promise == [], (
        "mark the promise in README.md (<!-- promise: <test name> -->) or drop the row:\n" + "\n".join(no_promise)
    )


def test_a_promise_without_a_row_and_a_row_without_a_promise_are_both_found():
    rows = [("Exactly once", "tests/integration/test_ledger.py", "test_exactly_once")]
    readme = (
        "- **Exactly once.** <!-- promise: test_exactly_once -->\n- Never twice. <!-- promise: test_never_twice -->\n"
    )
    assert unmatched(readme, rows) == (["README.md line 2: promise proved by test_never_twice has no row"], [])
    assert unmatched("- **Exactly once.**\n", rows) == (
        [],
        ["'Exactly once' (test_exactly_once): no README promise is marked with it"],
    )


def test_the_audited_promises_and_every_ledger_guarantee_are_marked():
    text = README.read_text()
    for phrase in AUDITED_PROMISES:
        lines = [line for line in text.splitlines() if phrase in line]
        assert lines and all(PROMISE_MARK.search(line) for line in lines), f"README: {phrase!r} is not marked"
    # Each bullet of "The ledger's guarantees" is a promise.
    section = text.split("## The ledger's guarantees", 1)[1].split("\n## ", 1)[0]
    bullets = re.split(r"\n(?=- \*\*)", section)[1:]
    assert len(bullets) >= 10
    unmarked = [bullet.split("\n", 1)[0] for bullet in bullets if not PROMISE_MARK.search(bullet)]
    assert unmarked == [], "ledger guarantees without a marked promise: " + "; ".join(unmarked)
