"""README promise "Concurrent writers are safe": writers of different accounts run in parallel,
and batches over overlapping accounts, listed in different orders, never deadlock."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import psycopg

from billing_pipeline.ledger import Entry, balance_of, post_entries, post_entry, verify_ledger
from tests.support.platform import create_accounts

D = Decimal
ACCOUNTS = ["a1", "a2", "a3", "a4", "a5", "a6"]


def test_overlapping_batches_in_opposite_orders_never_deadlock(db_url):
    create_accounts(db_url, *ACCOUNTS)
    writers, batches = 6, 25
    errors: list[BaseException] = []
    start = threading.Barrier(writers)

    def write(w: int) -> None:
        # Writer w touches four of the six accounts, in its own order: even writers ascending,
        # odd writers descending, each starting somewhere else. Locked in the order given, these
        # batches would wait on each other in a cycle.
        mine = [ACCOUNTS[(w + k) % len(ACCOUNTS)] for k in range(4)]
        order = mine if w % 2 == 0 else mine[::-1]
        try:
            with psycopg.connect(db_url, autocommit=True) as conn:
                start.wait()
                for b in range(batches):
                    post_entries(conn, [Entry(a, "topup", D("1.000001") * (w + 1), f"w{w}:b{b}:{a}") for a in order])
        except BaseException as exc:  # surfaced below (a deadlock is psycopg.errors.DeadlockDetected)
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert errors == [] and not any(t.is_alive() for t in threads)
    with psycopg.connect(db_url) as conn:
        expected = {a: D(0) for a in ACCOUNTS}
        for w in range(writers):
            for k in range(4):
                expected[ACCOUNTS[(w + k) % len(ACCOUNTS)]] += D("1.000001") * (w + 1) * batches
        assert {a: balance_of(conn, a) for a in ACCOUNTS} == expected
        assert conn.execute("SELECT count(*) FROM billing.credit_transactions").fetchone()[0] == writers * batches * 4
        assert verify_ledger(conn).ok


def test_a_writer_of_another_account_is_not_held_up(db_url):
    create_accounts(db_url, "acme", "globex")
    done: dict[str, float] = {}

    def post(account: str) -> None:
        with psycopg.connect(db_url, autocommit=True) as conn:
            post_entry(conn, Entry(account, "topup", D("5"), f"{account}-1"))
        done[account] = time.monotonic()

    with psycopg.connect(db_url) as holder:  # a long batch of acme's, still open
        holder.execute("INSERT INTO billing.credits (account_id) VALUES ('acme'), ('globex') ON CONFLICT DO NOTHING")
        holder.commit()
        holder.execute("SELECT 1 FROM billing.credits WHERE account_id = 'acme' FOR UPDATE")
        acme, globex = threading.Thread(target=post, args=("acme",)), threading.Thread(target=post, args=("globex",))
        acme.start()
        globex.start()
        globex.join(timeout=30)
        assert "globex" in done and "acme" not in done  # globex went through; acme waits for its own row
        released = time.monotonic()
        holder.rollback()
    acme.join(timeout=30)
    assert done["acme"] >= released
    with psycopg.connect(db_url) as conn:
        assert (balance_of(conn, "acme"), balance_of(conn, "globex")) == (D("5"), D("5"))
