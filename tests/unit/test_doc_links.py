"""Every docs/ page the product names (in an error, a help text, a docstring or a template) exists.

A message that sends a person to a page must send them somewhere: issue 23 found
`docs/reliability.md`, which was never written, in the ledger key's error."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from billing_pipeline.core.errors import ConfigurationError

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "billing_pipeline"
# `docs/<path>.<ext>`, optionally with an #anchor; a sentence's full stop is not part of it.
DOC_PATH = re.compile(r"\bdocs/[A-Za-z0-9_./-]*[A-Za-z0-9_-]\.(?:md|json|html)\b")
SOURCES = ("*.py", "*.j2", "*.sql", "*.yml", "*.txt")


def named_doc_paths() -> dict[str, list[str]]:
    """docs/ path -> the package files (relative) that name it."""
    found: dict[str, list[str]] = {}
    for pattern in SOURCES:
        for path in sorted(PACKAGE.rglob(pattern)):
            for doc in DOC_PATH.findall(path.read_text(errors="replace")):
                found.setdefault(doc, []).append(str(path.relative_to(REPO)))
    return found


def test_every_docs_path_named_in_the_package_exists():
    named = named_doc_paths()
    # The scan finds what it should: the ledger's rules page is named by the key's error.
    assert "docs/rules/ledger.md" in named and "billing_pipeline/ledger/entries.py" in named["docs/rules/ledger.md"]
    missing = {doc: files for doc, files in named.items() if not (REPO / doc).is_file()}
    assert missing == {}, f"pages named but not written: {missing}"


def test_the_scan_catches_a_missing_page(tmp_path):
    # The pattern reads a page in running text, without the sentence's full stop.
    assert DOC_PATH.findall("see docs/reliability.md. Then docs/rules/ledger.md, and docs/schemas/run.json") == [
        "docs/reliability.md",
        "docs/rules/ledger.md",
        "docs/schemas/run.json",
    ]
    assert not (REPO / "docs/reliability.md").exists()


@pytest.mark.parametrize("state", ["with_demo_key", "without"])
def test_missing_ledger_key_error_links_an_existing_page(state, tmp_path, monkeypatch):
    from billing_pipeline.ledger.entries import ledger_keyring

    for name in (
        "BILLING_LEDGER_KEY",
        "BILLING_LEDGER_KEY_FILE",
        "BILLING_LEDGER_KEY_ID",
        "BILLING_LEDGER_RETIRED_KEYS",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BILLING_STATE_DIR", str(tmp_path))
    if state == "with_demo_key":
        (tmp_path / "ledger.key").write_text("d" * 64 + "\n")
    with pytest.raises(ConfigurationError) as exc:
        ledger_keyring()
    message = str(exc.value)
    (page,) = set(DOC_PATH.findall(message))
    assert (REPO / page).is_file()
    if state == "with_demo_key":
        # The demo's key exists: use it, never generate one (its entries would fail as unknown_key).
        assert f"export BILLING_LEDGER_KEY_FILE={tmp_path / 'ledger.key'}" in message
        assert f"source {tmp_path}/demo.env" in message
        assert "Do not generate a new key" in message and "openssl" not in message
    else:
        assert "openssl rand -hex 32" in message and "BILLING_LEDGER_KEY_FILE" in message
