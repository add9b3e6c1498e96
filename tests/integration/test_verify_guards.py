"""Issue 21, points 3 and 4: plain `billing verify` (no checkpoint) guards everything that states an amount,
and posting refuses to sign onto a chain head signed by a key it does not hold.

Each tamper case is what someone with full database rights can do (triggers off through
``session_replication_role``, a guard constraint dropped); each is run through the console
script, whose exit code and JSON findings (each with its kind) are asserted.
"""

from __future__ import annotations

import json
import os
from datetime import date
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from jsonschema import Draft202012Validator

from billing_pipeline.invoicing.invoices import issue_invoices
from billing_pipeline.ledger import Entry, post_entries
from billing_pipeline.ledger.entries import canonical_json, entry_hash, key_fingerprint, timestamp_text
from tests.support.cycle import billing
from tests.support.grants import replay_grant_tables
from tests.support.platform import create_accounts

D = Decimal
OCTOBER = date(2026, 10, 1)


def usage(account: str, amount: str, hour: str, n: int) -> Entry:
    reference = {"hour": hour, "usage_kind": "workload_consumption", "account_id": account}
    return Entry(account, "usage_deduction", D(amount), f"usage:{account}:{hour}:{n}", reference=reference)


@pytest.fixture
def issued(db_url):
    """October 2026 issued for acme (usage −0.5 −0.25, SLA credit +4.5) and globex (usage −1); initech has
    entries but no invoice. Periods come from the entries' references, so today's date does not matter."""
    create_accounts(db_url, "acme", "globex", "initech")
    with psycopg.connect(db_url) as conn:
        post_entries(
            conn,
            [
                usage("acme", "-0.5", "2026-10-05T05:00:00+00:00", 1),
                Entry(
                    "acme",
                    "sla_credit",
                    D("4.5"),
                    "sla:dep-acme:2026-10",
                    reference={"month": "2026-10", "deployment_id": "dep-acme", "availability": "0.987"},
                ),
                usage("acme", "-0.25", "2026-10-06T05:00:00+00:00", 1),
                usage("globex", "-1", "2026-10-05T05:00:00+00:00", 1),
                Entry(
                    "initech",
                    "sla_credit",
                    D("20"),
                    "sla:dep-initech:2026-12",
                    reference={"month": "2026-12", "deployment_id": "dep-initech", "availability": "0.9"},
                ),
                usage("initech", "-0.18", "2026-12-01T05:00:00+00:00", 1),
            ],
        )
        result = issue_invoices(conn, OCTOBER, "close-2026-10")
    assert (result.first_number, result.last_number) == (1, 2)  # acme, globex (initech's entries are December's)
    return db_url


def env() -> dict:
    return dict(os.environ)


SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs" / "schemas" / "verify.json").read_text())


def verify() -> tuple[int, dict]:
    """`billing verify --json` through the console script; the document validates against its schema."""
    code, report, err = billing(["verify"], env())
    assert "Traceback" not in err
    errors = [e.message for e in Draft202012Validator(SCHEMA).iter_errors(report)]
    assert not errors, errors
    return code, report


def superuser(url: str) -> psycopg.Connection:
    """A session that switches the triggers off, as a superuser could."""
    conn = psycopg.connect(url)
    conn.execute("SET session_replication_role = replica")
    return conn


def test_an_untouched_ledger_and_its_invoices_verify(issued):
    code, report = verify()
    assert code == 0 and report["ok"] and report["kinds"] == {}
    assert report["invoices"] == 2 and report["entries"] == 6


def rechain_as_legacy(conn: psycopg.Connection, account: str) -> None:
    """Re-chain every entry of ``account`` with the unkeyed SHA-256 and label it pre-key legacy."""
    rows = conn.execute(
        "SELECT id, account_seq, type, amount, balance_after, idempotency_key, reference, reason, actor, created_at "
        "FROM billing.credit_transactions WHERE account_id = %s ORDER BY account_seq",
        (account,),
    ).fetchall()
    previous = "0" * 64
    for entry_id, seq, type_, amount, balance, key, reference, reason, actor, created in rows:
        digest = entry_hash(
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
            "UPDATE billing.credit_transactions SET prev_hash = %s, entry_hash = %s, key_id = 'legacy-sha256' "
            "WHERE id = %s",
            (previous, digest, entry_id),
        )
        previous = digest


def test_moving_the_legacy_boundary_and_rechaining_as_legacy_is_caught(issued):
    """initech's +20 credit turned into a balance of +1,999.82 instead of +19.82: boundary moved, guard dropped, entries re-chained
    with plain SHA-256 as if written before the keyed chain. The boundary row is not trusted alone."""
    with superuser(issued) as conn:
        conn.execute("ALTER TABLE billing.credit_transactions DROP CONSTRAINT legacy_hash_only_before_keying")
        conn.execute("UPDATE billing.ledger_legacy_boundary SET max_legacy_id = 1000000000")
        conn.execute(
            "UPDATE billing.credit_transactions SET amount = amount + 1980 WHERE idempotency_key LIKE 'sla:dep-initech:%'"
        )
        conn.execute(
            "UPDATE billing.credit_transactions SET balance_after = balance_after + 1980 WHERE account_id = 'initech'"
        )
        conn.execute("UPDATE billing.credits SET balance = 1999.82 WHERE account_id = 'initech'")
        rechain_as_legacy(conn, "initech")
        replay_grant_tables(conn)
    code, report = verify()
    assert code == 1 and report["kinds"] == {"legacy_unsealed": 1}
    assert report["problems"][0]["account_id"] == "initech"
    assert "2 entries (up to #2)" in report["problems"][0]["detail"]


def delete_newest(conn: psycopg.Connection, account: str, amount: str) -> None:
    newest, previous = conn.execute(
        "SELECT id, lag(id) OVER (ORDER BY account_seq) FROM billing.credit_transactions "
        "WHERE account_id = %s ORDER BY account_seq DESC LIMIT 1",
        (account,),
    ).fetchone()
    conn.execute("DELETE FROM billing.credit_transactions WHERE id = %s", (newest,))
    conn.execute(
        "UPDATE billing.credits SET balance = balance - %s, last_transaction_id = %s WHERE account_id = %s",
        (D(amount), previous, account),
    )


def test_deleting_the_newest_entry_that_an_invoice_records_as_its_chain_head_is_caught(issued):
    with superuser(issued) as conn:
        delete_newest(conn, "acme", "-0.25")
        replay_grant_tables(conn)
        head = conn.execute("SELECT chain_head_entry_id FROM billing.invoices WHERE account_id = 'acme'").fetchone()
    code, report = verify()
    assert code == 1
    assert report["kinds"] == {"invoice_line_mismatch": 1, "invoice_chain_head": 1}
    found = {p["kind"]: p for p in report["problems"]}
    assert found["invoice_chain_head"]["entry_id"] == head[0]
    assert found["invoice_chain_head"]["invoice_number"] == "SAT-00000001"
    assert "no longer in the ledger" in found["invoice_chain_head"]["detail"]


def test_deleting_an_invoiced_entry_that_is_not_the_head_is_caught_by_its_line(issued):
    """globex's only entry after the close is gone; the invoice's line names it (and it was the head)."""
    with superuser(issued) as conn:
        conn.execute("DELETE FROM billing.credit_transactions WHERE idempotency_key LIKE 'usage:globex:%'")
        conn.execute("DELETE FROM billing.credits WHERE account_id = 'globex'")
        replay_grant_tables(conn)
    code, report = verify()
    assert code == 1 and report["kinds"] == {"invoice_line_mismatch": 1, "invoice_chain_head": 1}


@pytest.mark.parametrize("consistent", [False, True], ids=["line-only", "line-total-and-closing"])
def test_an_edited_invoice_line_is_caught_and_the_invoice_is_not_shown(issued, consistent, capsys):
    with superuser(issued) as conn:
        conn.execute("UPDATE billing.invoice_lines SET amount = -95.5 WHERE amount = 4.5")
        if consistent:  # the careful forger makes the invoice add up again
            conn.execute(
                "UPDATE billing.invoices SET total = total - 100, closing_balance = closing_balance - 100 "
                "WHERE account_id = 'acme'"
            )
    code, report = verify()
    expected = {"invoice_line_mismatch": 1} if consistent else {"invoice_line_mismatch": 1, "invoice_total_mismatch": 1}
    assert code == 1 and report["kinds"] == expected
    line = next(p for p in report["problems"] if p["kind"] == "invoice_line_mismatch")
    assert line["account_id"] == "acme" and "says -95.500000" in line["detail"] and "+4.500000" in line["detail"]
    code, out, err = billing(["invoice", "acme", "--month", "2026-10"], env(), json_output=False)
    assert code == 1 and "95.5" not in out and err.count("\n") == 1 and "Traceback" not in err
    assert "invoice SAT-00000001 does not agree with the ledger" in err


def test_the_counter_moves_only_by_issuing(issued):
    with psycopg.connect(issued) as conn:
        for value in (10, 0):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="moves only by issuing"):
                conn.execute("UPDATE billing.invoice_number_counter SET last_number = %s", (value,))
            conn.rollback()
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            conn.execute("DELETE FROM billing.invoice_number_counter")
        conn.rollback()
        assert conn.execute("SELECT last_number FROM billing.invoice_number_counter").fetchone() == (2,)


def test_a_counter_moved_with_triggers_off_is_caught_and_so_is_the_gap_it_leaves(issued):
    with superuser(issued) as conn:
        conn.execute("UPDATE billing.invoice_number_counter SET last_number = 10")
    code, report = verify()
    assert code == 1 and report["kinds"] == {"invoice_counter": 1}
    assert "says the last number is 10" in report["problems"][0]["detail"]
    with psycopg.connect(issued) as conn:
        post_entries(conn, [usage("acme", "-0.5", "2026-11-05T05:00:00+00:00", 1)])
        result = issue_invoices(conn, date(2026, 11, 1), "close-2026-11")
    assert (result.first_number, result.last_number) == (11, 12)  # acme and globex; 3 to 10 never issued
    code, report = verify()
    assert code == 1 and report["kinds"] == {"invoice_number_gap": 1}
    assert "8 number(s) missing (3, 4, 5, 6, 7 …)" in report["problems"][0]["detail"]


def test_posting_with_a_key_that_did_not_sign_the_chain_head_is_refused_with_exit_3(issued):
    real_id = key_fingerprint(os.environ["BILLING_LEDGER_KEY"])
    wrong = {**env(), "BILLING_LEDGER_KEY": "not-the-ledger-key-" + "z" * 32}
    wrong.pop("BILLING_LEDGER_KEY_ID", None)
    wrong.pop("BILLING_LEDGER_RETIRED_KEYS", None)
    wrong_id = key_fingerprint(wrong["BILLING_LEDGER_KEY"])
    with psycopg.connect(issued) as conn:
        before = conn.execute("SELECT count(*), sum(amount) FROM billing.credit_transactions").fetchone()
    code, out, err = billing(["topup", "acme", "5", "--reference", "pay-acme-2"], wrong, json_output=False)
    assert code == 3 and out == "" and err.count("\n") == 1 and "Traceback" not in err
    assert f"signed by ledger key '{real_id}'" in err and f"BILLING_LEDGER_KEY is key '{wrong_id}'" in err
    # The same id set by hand over the wrong secret is not the key either.
    code, _, err = billing(
        ["topup", "acme", "5", "--reference", "pay-acme-2"],
        {**wrong, "BILLING_LEDGER_KEY_ID": real_id},
        json_output=False,
    )
    assert code == 3 and "another secret" in err
    with psycopg.connect(issued) as conn:
        assert conn.execute("SELECT count(*), sum(amount) FROM billing.credit_transactions").fetchone() == before
        assert conn.execute("SELECT balance FROM billing.credits WHERE account_id = 'acme'").fetchone() == (D("3.75"),)
    code, report = verify()
    assert code == 0 and report["kinds"] == {}


@pytest.mark.parametrize(
    "forgery",
    [
        "DELETE FROM billing.invoice_entries WHERE ledger_entry_id = "
        "(SELECT id FROM billing.credit_transactions WHERE idempotency_key = 'sla:dep-acme:2026-10')",
        "UPDATE billing.invoice_lines SET ledger_entry_ids = ledger_entry_ids || "
        "(SELECT id FROM billing.credit_transactions WHERE account_id = 'globex') WHERE line_type = 'usage' "
        "AND invoice_id = (SELECT id FROM billing.invoices WHERE account_id = 'acme')",
        # the same count and recorded sum, but the document would list globex's entry
        "UPDATE billing.invoice_lines SET ledger_entry_ids = ARRAY[(SELECT id FROM billing.credit_transactions "
        "WHERE account_id = 'globex')] WHERE line_type = 'sla_credit'",
    ],
    ids=["entry-unrecorded", "foreign-entry-named", "another-entry-named"],
)
def test_a_line_whose_entries_disagree_with_invoice_entries_is_caught(issued, forgery):
    with superuser(issued) as conn:
        conn.execute(forgery)
    code, report = verify()
    assert code == 1 and set(report["kinds"]) == {"invoice_line_mismatch"}
    assert {p["invoice_number"] for p in report["problems"]} == {"SAT-00000001"}
