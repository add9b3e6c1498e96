"""The billing rules live in the repository (docs/rules/), and the code cites only them.

Two checks over the source tree, no services needed:

* every ``docs/rules/<page>.md`` cited anywhere (code, SQL, YAML, tests, scripts, README, docs) is
  a page that exists, and every relative link between the rules pages resolves;
* no source file cites the external contract document any more (its file name, or its numbered
  sections), so a newcomer never meets a rule that is written somewhere they cannot read.

Each finder is also run on a small tree with known bad citations, so these tests fail when the
finders stop finding.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest


def _repository_root() -> Path:
    for folder in Path(__file__).resolve().parents:
        if (folder / "pyproject.toml").is_file() and (folder / "billing_pipeline").is_dir():
            return folder
    raise RuntimeError("cannot find the repository root above " + __file__)


ROOT = _repository_root()
RULES = ROOT / "docs" / "rules"
RULE_PAGES = ("README.md", "units.md", "pricing.md", "ledger.md", "lifecycle.md", "month-end.md", "ingestion.md")

# Where citations of the rules may appear, and where the external contract must no longer be cited.
CITING_PLACES = ("billing_pipeline", "dbt_project", "tests", "scripts", "bench", ".ci", "docs", "README.md")
SELF_CONTAINED_PLACES = ("billing_pipeline", "dbt_project", "tests", "scripts", "bench", ".ci")
SKIPPED_FOLDERS = {"__pycache__", ".pytest_cache", "target", "logs", "dbt_packages", "results", "images"}
TEXT_SUFFIXES = {".py", ".sql", ".yml", ".yaml", ".md", ".j2", ".html", ".toml", ".sh", ".txt", ".json", ".cfg", ""}

RULES_CITATION = re.compile(r"docs/rules/([A-Za-z0-9_.-]+\.md)")
# The external contract, however it is cited: its file name, "contract section 5", "contract
# sections 9 and 10", "contract §3", "Contract §7's", or a bare "§3" / "(section 10)" (the old
# shorthand for its numbered sections; nothing else in the repository is numbered that way).
EXTERNAL_CONTRACT = re.compile(r"contract\.md|contract\s+(?:sections?\b|§)|§\s*\d|\bsections?\s+\d", re.IGNORECASE)
MARKDOWN_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
# This file spells the forbidden citations out to test the finders on them: it is the one exception.
THIS_FILE = Path(__file__).resolve()


def text_files(root: Path, places: tuple[str, ...]) -> list[Path]:
    """The text files under ``places`` (folders or files relative to ``root``), build output skipped."""
    found: list[Path] = []
    for place in places:
        start = root / place
        candidates = [start] if start.is_file() else sorted(start.rglob("*")) if start.is_dir() else []
        for path in candidates:
            relative_parts = path.relative_to(root).parts
            if not path.is_file() or path.resolve() == THIS_FILE:
                continue
            if SKIPPED_FOLDERS.intersection(relative_parts[:-1]):
                continue
            if path.suffix.lower() in TEXT_SUFFIXES:
                found.append(path)
    return found


def read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None  # a binary file: it cites nothing


def missing_rule_pages(root: Path, places: tuple[str, ...]) -> list[str]:
    """``file:line: docs/rules/x.md`` for each citation of a rules page that does not exist."""
    problems = []
    for path in text_files(root, places):
        text = read_text(path)
        for number, line in enumerate((text or "").splitlines(), start=1):
            for page in RULES_CITATION.findall(line):
                if not (root / "docs" / "rules" / page).is_file():
                    problems.append(f"{path.relative_to(root)}:{number}: docs/rules/{page}")
    return problems


def external_contract_citations(root: Path, places: tuple[str, ...]) -> list[str]:
    """``file:line: text`` for each line that cites the external contract."""
    problems = []
    for path in text_files(root, places):
        text = read_text(path)
        for number, line in enumerate((text or "").splitlines(), start=1):
            if EXTERNAL_CONTRACT.search(line):
                problems.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    return problems


def broken_links_between_rules(rules: Path) -> list[str]:
    """``page: target`` for each relative Markdown link of a rules page that resolves to nothing."""
    problems = []
    for page in sorted(rules.glob("*.md")):
        for target in MARKDOWN_LINK.findall(page.read_text(encoding="utf-8")):
            if "://" in target:
                continue
            if not (page.parent / target).resolve().exists():
                problems.append(f"{page.name}: {target}")
    return problems


def test_every_rules_page_exists_and_the_index_links_each():
    index = (RULES / "README.md").read_text(encoding="utf-8")
    for page in RULE_PAGES:
        assert (RULES / page).is_file(), f"docs/rules/{page} is missing"
        if page != "README.md":
            assert f"]({page})" in index, f"docs/rules/README.md does not link {page}"


def test_every_cited_rules_page_exists():
    assert missing_rule_pages(ROOT, CITING_PLACES) == []


def test_the_code_cites_the_rules_pages():
    # The citations this test guards are really there (a rename that dropped them all would
    # otherwise pass the check above vacuously).
    cited = set()
    for path in text_files(ROOT, SELF_CONTAINED_PLACES):
        cited.update(RULES_CITATION.findall(read_text(path) or ""))
    assert cited >= {page for page in RULE_PAGES if page != "README.md"}


def test_links_between_rules_pages_resolve():
    assert broken_links_between_rules(RULES) == []


def test_no_source_file_cites_the_external_contract():
    assert external_contract_citations(ROOT, SELF_CONTAINED_PLACES) == []


@pytest.fixture
def tree_with_bad_citations(tmp_path: Path) -> Path:
    (tmp_path / "docs" / "rules").mkdir(parents=True)
    (tmp_path / "docs" / "rules" / "ledger.md").write_text("# The ledger\n[units](units.md)\n")
    package = tmp_path / "billing_pipeline"
    package.mkdir()
    (package / "fine.py").write_text('"""Round half-even (docs/rules/ledger.md)."""\n')
    (package / "gone.py").write_text("# the chain (docs/rules/chain.md)\n")
    (package / "old.py").write_text("# keyed (Contract section 5)\n# ok line\n'''see ../shared/" + "CONTRACT.md'''\n")
    (package / "model.sql").write_text("-- contract §4: covered by the rental\n-- (sections 9 and 10)\n")
    (package / "model.yml").write_text("      contract:\n        enforced: true\n")  # dbt's own word
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "old.py").write_text("# contract section 1\n")  # build output: skipped
    return tmp_path


def test_the_finders_find_bad_citations(tree_with_bad_citations: Path):
    root = tree_with_bad_citations
    assert missing_rule_pages(root, ("billing_pipeline",)) == ["billing_pipeline/gone.py:1: docs/rules/chain.md"]
    assert external_contract_citations(root, ("billing_pipeline",)) == [
        "billing_pipeline/model.sql:1: -- contract §4: covered by the rental",
        "billing_pipeline/model.sql:2: -- (sections 9 and 10)",
        "billing_pipeline/old.py:1: # keyed (Contract section 5)",
        "billing_pipeline/old.py:3: '''see ../shared/" + "CONTRACT.md'''",
    ]
    assert broken_links_between_rules(root / "docs" / "rules") == ["ledger.md: units.md"]
