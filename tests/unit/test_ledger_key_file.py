"""BILLING_LEDGER_KEY_FILE: the ledger key read from a file (the demo's .billing/ledger.key)."""

from __future__ import annotations

import pytest

from billing_pipeline.core.errors import ConfigurationError
from billing_pipeline.ledger.entries import key_fingerprint, ledger_keyring

SECRET = "a" * 40
OTHER = "b" * 40


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in (
        "BILLING_LEDGER_KEY",
        "BILLING_LEDGER_KEY_FILE",
        "BILLING_LEDGER_KEY_ID",
        "BILLING_LEDGER_RETIRED_KEYS",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BILLING_STATE_DIR", str(tmp_path / "state"))


def key_file(tmp_path, text: str):
    path = tmp_path / "ledger.key"
    path.write_text(text)
    return path


def test_key_file_alone_signs_as_the_same_key_would(monkeypatch, tmp_path):
    monkeypatch.setenv("BILLING_LEDGER_KEY_FILE", str(key_file(tmp_path, SECRET + "\n")))  # newline ignored
    from_file = ledger_keyring()
    assert from_file.current_id == key_fingerprint(SECRET)
    assert from_file.current_key == SECRET.encode()
    monkeypatch.delenv("BILLING_LEDGER_KEY_FILE")
    monkeypatch.setenv("BILLING_LEDGER_KEY", SECRET)
    assert ledger_keyring() == from_file


def test_both_set_to_the_same_key_is_accepted(monkeypatch, tmp_path):
    monkeypatch.setenv("BILLING_LEDGER_KEY_FILE", str(key_file(tmp_path, SECRET)))
    monkeypatch.setenv("BILLING_LEDGER_KEY", SECRET)
    assert ledger_keyring().current_key == SECRET.encode()


def test_both_set_to_different_keys_is_refused_without_printing_either(monkeypatch, tmp_path):
    path = key_file(tmp_path, OTHER)
    monkeypatch.setenv("BILLING_LEDGER_KEY_FILE", str(path))
    monkeypatch.setenv("BILLING_LEDGER_KEY", SECRET)
    with pytest.raises(ConfigurationError) as exc:
        ledger_keyring()
    message = str(exc.value)
    assert message.startswith(
        f"BILLING_LEDGER_KEY and BILLING_LEDGER_KEY_FILE ({path}) are both set, to different keys"
    )
    assert "Unset one of them" in message and "docs/rules/ledger.md" in message
    assert SECRET not in message and OTHER not in message
    assert exc.value.exit_code == 3


def test_unreadable_or_empty_key_file_is_named(monkeypatch, tmp_path):
    missing = tmp_path / "nope.key"
    monkeypatch.setenv("BILLING_LEDGER_KEY_FILE", str(missing))
    with pytest.raises(
        ConfigurationError, match=rf"BILLING_LEDGER_KEY_FILE={missing}: cannot read the ledger key file"
    ):
        ledger_keyring()
    monkeypatch.setenv("BILLING_LEDGER_KEY_FILE", str(key_file(tmp_path, " \n")))
    with pytest.raises(ConfigurationError, match="the ledger key file is empty"):
        ledger_keyring()


def test_short_key_in_a_file_is_refused_like_a_short_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("BILLING_LEDGER_KEY_FILE", str(key_file(tmp_path, "short")))
    with pytest.raises(ConfigurationError, match="BILLING_LEDGER_KEY is 5 characters long"):
        ledger_keyring()
