"""Issue 11, point 2: tampering by someone with full database rights is caught by `billing verify`.

The chain is keyed (HMAC-SHA256 under BILLING_LEDGER_KEY, outside the database), entries name
their key id so keys rotate, entries from before the keyed chain are accepted only below the
boundary migration 0006 recorded, and checkpoints kept outside the database catch a deleted
newest entry.
"""

from __future__ import annotations

import hashlib
import json
import os
from decimal import Decimal

import psycopg
import pytest

from billing_pipeline.cli.main import main
from billing_pipeline.core.errors import ConfigurationError
from billing_pipeline.ledger import (
    Entry,
    chain_heads,
    ensure_demo_ledger_key,
    post_entries,
    post_entry,
    verify_ledger,
)
from billing_pipeline.ledger.entries import canonical_json, entry_hash, key_fingerprint, timestamp_text
from tests.support.databases import server_url
from tests.support.grants import replay_grant_tables
from tests.support.platform import create_accounts

D = Decimal


@pytest.fixture
def ledger_db(db_url):
    create_accounts(db_url, "acme", "globex")
    with psycopg.connect(db_url) as conn:
        post_entries(conn, [Entry("acme", "topup", D("100"), "t1"), Entry("globex", "topup", D("50"), "t2")])
        post_entries(
            conn, [Entry("acme", "usage_deduction", D("-7.25"), f"u{i}", reference={"hour": f"h{i}"}) for i in range(3)]
        )
    return db_url


def superuser(url: str) -> psycopg.Connection:
    """A session that switches the append-only triggers off, as a superuser could."""
    conn = psycopg.connect(url)
    conn.execute("SET session_replication_role = replica")
    return conn


def problems(url: str, **kwargs) -> list[str]:
    with psycopg.connect(url) as conn:
        return sorted({p.kind for p in verify_ledger(conn, **kwargs).problems})


def test_deleting_the_newest_entry_and_rolling_back_the_cache_is_caught_by_the_checkpoint(ledger_db, tmp_path):
    checkpoint = tmp_path / "heads.json"
    assert problems(ledger_db, checkpoint=checkpoint) == []  # writes the heads
    with superuser(ledger_db) as conn:
        newest, previous = conn.execute(
            "SELECT id, lag(id) OVER (ORDER BY account_seq) FROM billing.credit_transactions "
            "WHERE account_id = 'acme' ORDER BY account_seq DESC LIMIT 1"
        ).fetchone()
        conn.execute("DELETE FROM billing.credit_transactions WHERE id = %s", (newest,))
        conn.execute(
            "UPDATE billing.credits SET balance = balance + 7.25, last_transaction_id = %s WHERE account_id = 'acme'",
            (previous,),
        )
        replay_grant_tables(conn)
    assert problems(ledger_db) == []  # the chain alone cannot see a shortened tail ...
    assert problems(ledger_db, checkpoint=checkpoint) == ["checkpoint_missing_entries"]  # ... the checkpoint can
    assert json.loads(checkpoint.read_text())["accounts"]["acme"]["entries"] == 4  # left as it was


def test_rewriting_an_old_entry_and_rechaining_with_unkeyed_sha256_is_caught(ledger_db):
    with superuser(ledger_db) as conn:
        conn.execute(
            "UPDATE billing.credit_transactions SET amount = -0.25, balance_after = balance_after + 7 "
            "WHERE idempotency_key = 'u0'"
        )
        conn.execute(
            "UPDATE billing.credit_transactions SET balance_after = balance_after + 7 "
            "WHERE idempotency_key IN ('u1', 'u2')"
        )
        conn.execute("UPDATE billing.credits SET balance = balance + 7 WHERE account_id = 'acme'")
        replay_grant_tables(conn)
        rows = conn.execute(
            "SELECT id, account_id, account_seq, type, amount, balance_after, idempotency_key, reference, reason, "
            "actor, created_at FROM billing.credit_transactions WHERE account_id = 'acme' ORDER BY account_seq"
        ).fetchall()
        for relabel in (False, True):  # keep the key id, or claim the pre-0006 legacy hash
            if relabel:  # the database refuses that, so the attacker drops the guard first
                conn.execute("ALTER TABLE billing.credit_transactions DROP CONSTRAINT legacy_hash_only_before_keying")
            previous = "0" * 64
            for entry_id, account, seq, type_, amount, balance, key, reference, reason, actor, created in rows:
                previous = entry_hash(
                    prev_hash=previous,
                    account_id=account,
                    account_seq=seq,
                    type=type_,
                    amount=amount,
                    balance_after=balance,
                    idempotency_key=key,
                    reference_json=canonical_json(reference),
                    reason=reason,
                    actor=actor,
                    created_at=timestamp_text(created),
                )
                conn.execute(
                    "UPDATE billing.credit_transactions SET entry_hash = %s, prev_hash = "
                    "coalesce((SELECT entry_hash FROM billing.credit_transactions p WHERE p.account_id = %s "
                    "AND p.account_seq = %s), repeat('0', 64))"
                    + (", key_id = 'legacy-sha256'" if relabel else "")
                    + " WHERE id = %s",
                    (previous, account, seq - 1, entry_id),
                )
            conn.commit()
            found = problems(ledger_db)
            # relabelled: above the recorded boundary, and no seal under the key vouches for legacy entries
            assert found == (["legacy_hash_after_keying", "legacy_unsealed"] if relabel else ["hash_mismatch"])


def test_rewriting_with_a_wrong_key_is_caught_and_needs_the_real_key(ledger_db, monkeypatch):
    with psycopg.connect(ledger_db) as conn:
        assert verify_ledger(conn).ok
    real_id = key_fingerprint(os.environ["BILLING_LEDGER_KEY"])
    monkeypatch.setenv("BILLING_LEDGER_KEY", "an-attacker-guess-" + "x" * 32)
    monkeypatch.setenv("BILLING_LEDGER_KEY_ID", real_id)
    with psycopg.connect(ledger_db) as conn:  # same key id, another secret: nothing verifies
        assert {p.kind for p in verify_ledger(conn).problems} == {"hash_mismatch"}


def test_no_key_is_a_configuration_error_naming_the_variable(ledger_db, monkeypatch, capsys):
    monkeypatch.delenv("BILLING_LEDGER_KEY")
    with psycopg.connect(ledger_db) as conn:
        with pytest.raises(ConfigurationError, match=r"BILLING_LEDGER_KEY \(or BILLING_LEDGER_KEY_FILE\) is not set"):
            post_entry(conn, Entry("acme", "topup", D("1"), "nokey"))
        with pytest.raises(ConfigurationError, match="BILLING_LEDGER_KEY"):
            verify_ledger(conn)
    assert main(["topup", "acme", "5", "--reference", "nokey"]) == 3
    err = capsys.readouterr().err
    assert "BILLING_LEDGER_KEY (or BILLING_LEDGER_KEY_FILE) is not set" in err and "Traceback" not in err
    monkeypatch.setenv("BILLING_LEDGER_KEY", "short")
    assert main(["verify"]) == 3 and "at least 32" in capsys.readouterr().err


def test_keys_rotate_old_entries_verify_with_the_retired_key(ledger_db, monkeypatch):
    old = os.environ["BILLING_LEDGER_KEY"]
    monkeypatch.setenv("BILLING_LEDGER_KEY_ID", "2026-11-a")  # the same secret named anew: keep the old id
    monkeypatch.setenv("BILLING_LEDGER_RETIRED_KEYS", f"{key_fingerprint(old)}:{old}")
    with psycopg.connect(ledger_db) as conn:
        post_entry(conn, Entry("acme", "topup", D("1"), "under-a"))
    monkeypatch.setenv("BILLING_LEDGER_KEY", "second-key-" + "y" * 32)
    monkeypatch.setenv("BILLING_LEDGER_KEY_ID", "2026-12-b")
    with psycopg.connect(ledger_db) as conn:  # the old key not kept: posting refuses to sign onto its chain
        with pytest.raises(ConfigurationError, match="signed by ledger key '2026-11-a'.*'2026-12-b'"):
            post_entry(conn, Entry("acme", "topup", D("1"), "under-b"))
    monkeypatch.setenv("BILLING_LEDGER_RETIRED_KEYS", f"2026-11-a:{old}")
    with psycopg.connect(ledger_db) as conn:
        post_entry(conn, Entry("acme", "topup", D("1"), "under-b"))
    monkeypatch.delenv("BILLING_LEDGER_RETIRED_KEYS")
    with psycopg.connect(ledger_db) as conn:
        report = verify_ledger(conn)
        assert {p.kind for p in report.problems} == {"unknown_key"}  # the old keys are not configured
        assert "BILLING_LEDGER_RETIRED_KEYS" in report.problems[0].detail
    monkeypatch.setenv("BILLING_LEDGER_RETIRED_KEYS", f"{key_fingerprint(old)}:{old},2026-11-a:{old}")
    with psycopg.connect(ledger_db) as conn:
        report = verify_ledger(conn)
        assert report.ok, report.problems
        assert set(report.key_ids) == {key_fingerprint(old), "2026-11-a", "2026-12-b"}
        key_ids = dict(
            conn.execute(
                "SELECT idempotency_key, key_id FROM billing.credit_transactions WHERE idempotency_key LIKE 'under-%'"
            ).fetchall()
        )
    assert key_ids == {"under-a": "2026-11-a", "under-b": "2026-12-b"}


def test_checkpoint_cli_writes_then_checks_and_refuses_a_forged_file(ledger_db, tmp_path, capsys):
    checkpoint = tmp_path / "checkpoints" / "ledger.json"
    assert main(["verify", "--checkpoint", str(checkpoint)]) == 0
    assert "checkpoint written" in capsys.readouterr().out
    heads = json.loads(checkpoint.read_text())["accounts"]
    with psycopg.connect(ledger_db) as conn:
        assert heads == chain_heads(conn)
        assert heads["acme"]["entries"] == 4 and heads["globex"]["entries"] == 1
        post_entry(conn, Entry("globex", "topup", D("1"), "later"))
    assert main(["verify", "--checkpoint", str(checkpoint), "--json"]) == 0  # the chain grew: fine
    assert json.loads(capsys.readouterr().out)["ok"]
    assert json.loads(checkpoint.read_text())["accounts"]["globex"]["entries"] == 2  # and was advanced
    forged = json.loads(checkpoint.read_text())
    forged["accounts"]["acme"]["entries"] = 3
    checkpoint.write_text(json.dumps(forged))
    assert main(["verify", "--checkpoint", str(checkpoint)]) == 2
    err = capsys.readouterr().err
    assert "was altered" in err and "Traceback" not in err


def test_entries_written_before_the_keyed_chain_verify_as_legacy_and_are_counted(databases, monkeypatch):
    """Migration 0006 keeps pre-existing entries (unkeyed SHA-256, key id legacy-sha256): verify
    accepts them below the recorded boundary and says how many remain; new entries are keyed."""
    from alembic import command

    from billing_pipeline.db.migrate import alembic_config

    url = databases.new()
    name = url.rsplit("/", 1)[1] + "_legacy"
    with psycopg.connect(server_url("postgres"), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    legacy_url = server_url(name)
    databases.created.append(name)
    command.upgrade(alembic_config(legacy_url), "0005")
    create_accounts(legacy_url, "acme", "globex")
    with psycopg.connect(legacy_url) as conn:  # what the old code wrote: unkeyed SHA-256
        previous = "0" * 64
        for seq, (amount, balance) in enumerate([(D("10"), D("10")), (D("-3"), D("7"))], start=1):
            created = conn.execute("SELECT now()").fetchone()[0]
            previous_hash, previous = (
                previous,
                entry_hash(
                    prev_hash=previous,
                    account_id="acme",
                    account_seq=seq,
                    type="admin_adjustment",
                    amount=amount,
                    balance_after=balance,
                    idempotency_key=f"old{seq}",
                    reference_json="{}",
                    reason="r",
                    actor="a",
                    created_at=timestamp_text(created),
                ),
            )
            conn.execute(
                "INSERT INTO billing.credit_transactions (account_id, account_seq, type, amount, balance_after, "
                "idempotency_key, reason, actor, created_at, prev_hash, entry_hash) "
                "VALUES ('acme', %s, 'admin_adjustment', %s, %s, %s, 'r', 'a', %s, %s, %s)",
                (seq, amount, balance, f"old{seq}", created, previous_hash, previous),
            )
        conn.execute(
            "INSERT INTO billing.credits (account_id, balance, last_transaction_id) "
            "SELECT 'acme', 7, max(id) FROM billing.credit_transactions"
        )
    command.upgrade(alembic_config(legacy_url), "head")
    with psycopg.connect(legacy_url) as conn:
        report = verify_ledger(conn)  # the boundary row alone is not trusted: the operator seals once
        assert [(p.account_id, p.kind) for p in report.problems] == [("acme", "legacy_unsealed")]
        assert "--seal-legacy" in report.problems[0].detail
        report = verify_ledger(conn, seal_legacy=True)
        assert report.ok and report.notes[0].startswith("sealed 2 pre-key entries of 1 accounts")
        report = verify_ledger(conn)
        assert report.ok and report.unkeyed_entries == 2 and "2 of them are not yet followed" in report.notes[0]
        post_entry(conn, Entry("acme", "topup", D("1"), "new"))  # chains onto the legacy head, keyed
        report = verify_ledger(conn)
        assert report.ok and report.unkeyed_entries == 2 and "0 of them are not yet followed" in report.notes[0]
        with pytest.raises(psycopg.errors.CheckViolation, match="legacy_hash_only_before_keying"):
            conn.execute(
                "INSERT INTO billing.credit_transactions (account_id, account_seq, type, amount, balance_after, "
                "idempotency_key, prev_hash, entry_hash, key_id) "
                "VALUES ('globex', 1, 'topup', 1, 1, 'sneak', %s, 'x', 'legacy-sha256')",
                ("0" * 64,),
            )
        conn.rollback()
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            conn.execute("DELETE FROM billing.ledger_legacy_seal")
        conn.rollback()
    # Sealed: moving the boundary and re-labelling the keyed entry as legacy is caught by the seal.
    with superuser(legacy_url) as conn:
        conn.execute("ALTER TABLE billing.credit_transactions DROP CONSTRAINT legacy_hash_only_before_keying")
        conn.execute("UPDATE billing.ledger_legacy_boundary SET max_legacy_id = max_legacy_id + 1")
        row = conn.execute(
            "SELECT id, prev_hash, account_seq, amount, balance_after, created_at FROM billing.credit_transactions "
            "WHERE idempotency_key = 'new'"
        ).fetchone()
        digest = entry_hash(
            prev_hash=row[1],
            account_id="acme",
            account_seq=row[2],
            type="topup",
            amount=row[3],
            balance_after=row[4],
            idempotency_key="new",
            reference_json="{}",
            reason=None,
            actor=None,
            created_at=timestamp_text(row[5]),
        )
        conn.execute(
            "UPDATE billing.credit_transactions SET entry_hash = %s, key_id = 'legacy-sha256' WHERE id = %s",
            (digest, row[0]),
        )
    assert problems(legacy_url) == ["legacy_boundary_moved", "legacy_entries_changed"]
    with superuser(legacy_url) as conn:  # a seal forged to match is refused by its HMAC
        conn.execute(
            "UPDATE billing.ledger_legacy_seal SET max_legacy_id = max_legacy_id + 1, "
            "legacy_heads = jsonb_build_object('acme', jsonb_build_array(3, %s::text))",
            (digest,),
        )
    assert problems(legacy_url) == ["legacy_seal_forged"]


def test_demo_key_helper_makes_one_key_file_and_keeps_it(tmp_path, monkeypatch):
    monkeypatch.delenv("BILLING_LEDGER_KEY")
    path = ensure_demo_ledger_key(tmp_path / ".billing")
    secret = path.read_text().strip()
    assert len(secret) == 64 and oct(path.stat().st_mode)[-3:] == "600"
    assert "BILLING_LEDGER_KEY" not in os.environ  # the demo's driver exports it, not the ledger module
    assert ensure_demo_ledger_key(tmp_path / ".billing") == path and path.read_text().strip() == secret


def test_the_hmac_input_is_the_canonical_json_with_the_key_id_first():
    import hmac

    fields = dict(
        prev_hash="0" * 64,
        account_id="acme",
        account_seq=1,
        type="topup",
        amount=D("1"),
        balance_after=D("1"),
        idempotency_key="k",
        reference_json="{}",
        reason=None,
        actor=None,
        created_at="2026-11-25T00:00:00.000000+00:00",
    )
    expected = canonical_json(
        ["kid", "0" * 64, "acme", 1, "topup", "1.000000", "1.000000", "k", "{}", None, None, fields["created_at"]]
    )
    assert (
        entry_hash(**fields, key_id="kid", key=b"secret")
        == hmac.new(b"secret", expected.encode(), hashlib.sha256).hexdigest()
    )
