"""docs/promises.md maps README promises to tests; every test it names must exist, so the table
cannot rot. Read with ``ast``: nothing is imported or run."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TABLE = REPO / "docs" / "promises.md"
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
        "Command line",
        "Ingestion, transform, deduction",
        "Layout",
    ]
