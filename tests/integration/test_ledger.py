"""The credit ledger against real PostgreSQL: exactly once, concurrency, immutability, tamper evidence."""

from __future__ import annotations

import threading
from collections import Counter
from decimal import Decimal

import psycopg
import pytest

from billing_pipeline.ledger import (
    Entry,
    IdempotencyConflict,
    LedgerInputError,
    balance_of,
    post_entries,
    post_entry,
    verify_ledger,
)
from tests.support.platform import create_accounts, ledger_rows

D = Decimal


@pytest.fixture
def ledger_db(db_url):
    create_accounts(db_url, "acme", "globex")
    return db_url


def test_entries_chain_balances_and_cache(ledger_db):
    with psycopg.connect(ledger_db) as conn:
        results = post_entries(
            conn,
            [
                Entry("acme", "topup", D("100"), "t1"),
                Entry(
                    "acme", "usage_deduction", D("-12.3456789"), "u1", reference={"hour": "2026-11-01T10:00:00+00:00"}
                ),
                Entry("globex", "topup", D("5"), "t2"),
            ],
        )
        assert [r.created for r in results] == [True, True, True]
        # -12.3456789 rounds half-even to -12.345679; the running balance follows.
        assert [r.balance_after for r in results] == [D("100"), D("87.654321"), D("5")]
        assert balance_of(conn, "acme") == D("87.654321")
        assert balance_of(conn, "globex") == D("5")
        seqs = conn.execute(
            "SELECT account_seq, prev_hash, entry_hash FROM billing.credit_transactions "
            "WHERE account_id = 'acme' ORDER BY account_seq"
        ).fetchall()
        assert [s[0] for s in seqs] == [1, 2]
        assert seqs[0][1] == "0" * 64 and seqs[1][1] == seqs[0][2]
        assert verify_ledger(conn).ok


def _ids_by_key(conn) -> dict[str, int]:
    return dict(conn.execute("SELECT idempotency_key, id FROM billing.credit_transactions").fetchall())


def test_each_result_carries_its_own_entry_id_with_repeats_and_keys_posted_before(ledger_db):
    with psycopg.connect(ledger_db) as conn:
        post_entry(conn, Entry("globex", "topup", D("3"), "old"))
        batch = [Entry(("acme", "globex")[i % 2], "topup", D(i + 1), f"k{i}") for i in range(6)]
        results = post_entries(conn, [batch[0], Entry("globex", "topup", D("3"), "old"), *batch[1:], batch[2]])
        ids = _ids_by_key(conn)
    assert [(r.idempotency_key, r.entry_id, r.created) for r in results] == [
        (key, ids[key], created)
        for key, created in [("k0", True), ("old", False), *((f"k{i}", True) for i in range(1, 6)), ("k2", False)]
    ]


def test_ids_read_back_out_of_the_copy_order_are_matched_by_account_and_sequence(ledger_db, monkeypatch):
    # Sorted, the staged ids are in COPY order (one COPY takes its ids in the order it reads its
    # rows); were they not, each is matched by its account and sequence number. Here the ids
    # handed back to Python are swapped end for end, so that sorting them reverses the rows.
    import billing_pipeline.ledger.posting as posting

    real = posting.stage_new_entries

    def swapped(*args):
        staged = real(*args)
        ids = sorted(i for i, _, _ in staged)
        swap = dict(zip(ids, reversed(ids)))
        return [(swap[i], a, s) for i, a, s in staged]

    monkeypatch.setattr(posting, "stage_new_entries", swapped)
    entries = [Entry(("acme", "globex")[i % 2], "topup", D(i + 1), f"k{i}") for i in range(5)]
    with psycopg.connect(ledger_db) as conn:
        results = post_entries(conn, entries)
        ids = _ids_by_key(conn)
    real_ids = [ids[f"k{i}"] for i in range(5)]
    assert [r.entry_id for r in results] == list(reversed(real_ids))


@pytest.mark.parametrize(
    ("given", "posted"),
    [("0.0000015", "0.000002"), ("0.0000025", "0.000002"), ("0.0000035", "0.000004"), ("1.0000005", "1.000000")],
)
def test_amounts_round_half_even_to_micro_credits(ledger_db, given, posted):
    with psycopg.connect(ledger_db) as conn:
        assert post_entry(conn, Entry("acme", "topup", D(given), "k")).amount == D(posted)


def test_same_idempotency_key_twice_leaves_one_entry_and_says_so(ledger_db):
    entry = Entry("acme", "topup", D("10"), "stripe:pi_123")
    with psycopg.connect(ledger_db) as conn:
        first = post_entry(conn, entry)
        second = post_entry(conn, entry)
        in_batch = post_entries(conn, [entry, Entry("acme", "topup", D("1"), "other")])
    assert first.created and not second.created
    assert second.entry_id == first.entry_id and not in_batch[0].created and in_batch[1].created
    assert [r[5] for r in ledger_rows(ledger_db, "acme")] == ["stripe:pi_123", "other"]


def test_same_key_with_different_content_is_refused(ledger_db):
    with psycopg.connect(ledger_db) as conn:
        post_entry(conn, Entry("acme", "topup", D("10"), "k1"))
        with pytest.raises(IdempotencyConflict, match="k1.*already posted"):
            post_entry(conn, Entry("acme", "topup", D("11"), "k1"))
        with pytest.raises(IdempotencyConflict, match="twice in one batch"):
            post_entries(conn, [Entry("acme", "topup", D("1"), "k2"), Entry("globex", "topup", D("1"), "k2")])
    assert len(ledger_rows(ledger_db)) == 1


def test_eight_concurrent_writers_lose_nothing_and_double_nothing(ledger_db):
    writers, per_writer = 8, 500
    errors: list[BaseException] = []
    created: Counter = Counter()  # key -> how many posts of it said created=True
    created_lock = threading.Lock()
    start = threading.Barrier(writers)

    def post(conn, e: Entry) -> None:
        was_created = post_entry(conn, e).created
        with created_lock:
            created[e.idempotency_key] += was_created

    def entry(owner: int, i: int) -> Entry:
        return Entry("acme", "topup", D("0.01") * (owner + 1), f"w{owner}-{i}")

    def write(w: int) -> None:
        neighbour = (w + 1) % writers
        try:
            with psycopg.connect(ledger_db, autocommit=True) as conn:
                start.wait()
                for i in range(per_writer):
                    # Every 50th key is raced by two writers: the writer it belongs to and the writer
                    # before it, which posts the same entry at about the same moment. Exactly one wins.
                    if i % 50 == 0:
                        post(conn, entry(neighbour, i))
                    post(conn, entry(w, i))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    raced = [f"w{w}-{i}" for w in range(writers) for i in range(0, per_writer, 50)]
    assert len(raced) == 80 and all(created[key] == 1 for key in raced)  # one winner per raced key
    assert sum(created.values()) == writers * per_writer
    expected = sum(D("0.01") * (w + 1) * per_writer for w in range(writers))
    with psycopg.connect(ledger_db) as conn:
        count, total, distinct_seq = conn.execute(
            "SELECT count(*), sum(amount), count(DISTINCT account_seq) FROM billing.credit_transactions"
        ).fetchone()
        assert count == distinct_seq == writers * per_writer
        assert total == expected == balance_of(conn, "acme")
        per_raced_key = conn.execute(
            "SELECT count(*) FROM billing.credit_transactions WHERE idempotency_key = ANY(%s) GROUP BY idempotency_key",
            (raced,),
        ).fetchall()
        assert per_raced_key == [(1,)] * len(raced)
        assert verify_ledger(conn).ok


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE billing.credit_transactions SET amount = 1000",
        "DELETE FROM billing.credit_transactions",
        "TRUNCATE billing.credit_transactions CASCADE",
    ],
)
def test_ledger_refuses_update_delete_truncate_even_for_its_owner(ledger_db, statement):
    with psycopg.connect(ledger_db) as conn:
        post_entry(conn, Entry("acme", "topup", D("10"), "t1"))
        owner = conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'credit_transactions'").fetchone()[0]
        assert owner == conn.info.user  # we are the owner (and a superuser), and still refused
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            conn.execute(statement)
        conn.rollback()
    assert ledger_rows(ledger_db) == [("acme", 1, "topup", D("10"), D("10"), "t1")]


def test_verify_reports_a_tampered_cache_and_a_ledger_edited_behind_the_guard(ledger_db):
    with psycopg.connect(ledger_db) as conn:
        post_entries(
            conn,
            [
                Entry("acme", "topup", D("50"), "t1"),
                Entry("acme", "usage_deduction", D("-5"), "u1"),
                Entry("globex", "topup", D("7"), "t2"),
            ],
        )
        assert verify_ledger(conn).ok
        conn.execute("UPDATE billing.credits SET balance = balance + 1 WHERE account_id = 'globex'")
        conn.execute("ALTER TABLE billing.credit_transactions DISABLE TRIGGER credit_transactions_append_only")
        conn.execute("UPDATE billing.credit_transactions SET amount = -1 WHERE idempotency_key = 'u1'")
        conn.execute("ALTER TABLE billing.credit_transactions ENABLE TRIGGER credit_transactions_append_only")
        conn.commit()
        report = verify_ledger(conn)
    kinds = {(p.account_id, p.kind) for p in report.problems}
    assert ("globex", "cache_balance") in kinds
    assert {("acme", "hash_mismatch"), ("acme", "balance_after"), ("acme", "cache_balance")} <= kinds


BAD_ENTRIES = [
    (Entry("acme", "topup", D("NaN"), "k"), "not a finite number"),
    (Entry("acme", "topup", D("Infinity"), "k"), "not a finite number"),
    (Entry("acme", "topup", 1.5, "k"), "is a float"),
    (Entry("acme", "topup", 3, "k"), "decimal.Decimal only"),
    (Entry("acme", "topup", D("-5"), "k"), "must be positive"),
    (Entry("acme", "usage_deduction", D("5"), "k"), "must be negative"),
    (Entry("acme", "topup", D("0.0000004"), "k"), "zero after rounding"),
    (Entry("acme", "refund", D("5"), "k"), "unknown type 'refund'"),
    (Entry("acme", "admin_adjustment", D("5"), "k", actor="ops"), "needs a reason"),
    (Entry("acme", "admin_adjustment", D("5"), "k", reason="goodwill"), "needs an actor"),
    (Entry("acme", "reversal", D("5"), "k"), "must name the entry it reverses"),
    (Entry("acme", "topup", D("5"), " "), "no idempotency key"),
    (Entry("nobody", "topup", D("5"), "k"), "unknown account\\(s\\) 'nobody'"),
]


@pytest.mark.parametrize(("bad", "message"), BAD_ENTRIES, ids=[m for _, m in BAD_ENTRIES])
def test_bad_entries_are_refused_and_nothing_of_the_batch_is_written(ledger_db, bad, message):
    with psycopg.connect(ledger_db) as conn, pytest.raises(LedgerInputError, match=message):
        post_entries(conn, [Entry("globex", "topup", D("1"), "good-one"), bad])
    assert ledger_rows(ledger_db) == []
    with psycopg.connect(ledger_db) as conn:
        assert conn.execute("SELECT count(*) FROM billing.credits WHERE balance <> 0").fetchone()[0] == 0


def test_database_refuses_a_wrong_sign_even_from_a_writer_that_bypasses_the_module(ledger_db):
    with psycopg.connect(ledger_db) as conn, pytest.raises(psycopg.errors.CheckViolation, match="sign_matches_type"):
        conn.execute(
            "INSERT INTO billing.credit_transactions (account_id, account_seq, type, amount, balance_after, "
            "idempotency_key, prev_hash, entry_hash, key_id) VALUES ('acme', 1, 'usage_deduction', 5, 5, 'x', '', '', 'k')"
        )


def test_database_refuses_entries_of_unknown_accounts_and_keeps_accounts_that_have_entries(ledger_db):
    with psycopg.connect(ledger_db) as conn:
        with pytest.raises(psycopg.errors.ForeignKeyViolation, match="unknown account 'ghost'"):
            conn.execute(
                "INSERT INTO billing.credit_transactions (account_id, account_seq, type, amount, balance_after, "
                "idempotency_key, prev_hash, entry_hash, key_id) VALUES ('ghost', 1, 'topup', 5, 5, 'x', '', '', 'k')"
            )
        conn.rollback()
        post_entry(conn, Entry("acme", "topup", D("10"), "t1"))
        for statement in (
            "DELETE FROM billing.accounts WHERE id = 'acme'",
            "UPDATE billing.accounts SET id = 'acme2' WHERE id = 'acme'",
        ):
            with pytest.raises(psycopg.errors.ForeignKeyViolation, match="has ledger entries"):
                conn.execute(statement)
            conn.rollback()
        conn.execute("DELETE FROM billing.accounts WHERE id = 'globex'")  # no entries: allowed


def test_entry_hash_is_the_sha256_of_the_canonical_json_of_the_entry():
    """The hand-spelled hash input must stay exactly canonical JSON, escapes and all."""
    import hashlib

    from billing_pipeline.ledger.entries import canonical_json, entry_hash

    fields = dict(
        prev_hash="0" * 64,
        account_id='acme "x" é\n',
        account_seq=12,
        type="topup",
        amount=D("-1.5"),
        balance_after=D("2"),
        idempotency_key="k|1",
        reference_json='{"a":"b"}',
        reason="why \\ \x01 ünïcode",
        actor=None,
        created_at="2026-11-25T00:00:00.000000+00:00",
    )
    expected = canonical_json(
        [
            fields["prev_hash"],
            fields["account_id"],
            12,
            "topup",
            "-1.500000",
            "2.000000",
            "k|1",
            '{"a":"b"}',
            fields["reason"],
            None,
            fields["created_at"],
        ]
    )
    assert entry_hash(**fields) == hashlib.sha256(expected.encode()).hexdigest()


def test_the_lifecycle_audit_trail_is_append_only_too(ledger_db):
    with psycopg.connect(ledger_db) as conn:
        for statement in (
            "UPDATE billing.lifecycle_events SET action = 'x'",
            "DELETE FROM billing.lifecycle_events",
            "TRUNCATE billing.lifecycle_events",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="billing.lifecycle_events is append-only"):
                conn.execute(statement)
            conn.rollback()
