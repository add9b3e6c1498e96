"""Crash safety and concurrency, kept as tests (issue 11): randomized with a fixed seed.

* 15 SIGKILLs of a real process at different points of posting batches and `billing topup`:
  after each kill the ledger verifies (balances = sums, cache, keyed chain) and every batch is
  all or nothing; run to the end, every entry is posted exactly once.
* 50 identical top-ups at once: one entry. 50 concurrent adjustments (each sent twice): 50 entries.
* two deduction runs at once (what two `billing run`s do to the ledger), from two processes:
  each hour's usage deducted once.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import psycopg

from billing_pipeline.cli.main import main
from billing_pipeline.ledger import verify_ledger
from tests.support import ledger_worker
from tests.support.platform import create_accounts

REPO = Path(__file__).resolve().parents[2]
SEED = 20261126
KILLS = 15


class ForkServer:
    """``tests.support.ledger_worker`` started once; each ``start()`` forks a real worker process."""

    def __init__(self, url: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.ledger_worker", url, str(SEED)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )

    def start(self) -> int:
        self.process.stdin.write("go\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline().split()
        assert line[0] == "ready", line
        return int(line[1])

    def wait(self) -> int:
        line = self.process.stdout.readline().split()
        assert line[0] == "exit", line
        return int(line[1])

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


def check_ledger(url: str, work) -> Counter:
    with psycopg.connect(url) as conn:
        report = verify_ledger(conn)
        assert report.ok, report.problems
        keys = Counter(k for (k,) in conn.execute("SELECT idempotency_key FROM billing.credit_transactions"))
    assert all(n == 1 for n in keys.values())
    for _kind, rows in work:  # all or nothing
        assert len({r[3] in keys for r in rows}) == 1, f"batch {rows[0][3]} half posted"
    return keys


def test_fifteen_sigkills_at_random_points_leave_a_consistent_ledger_and_nothing_doubled(db_url):
    create_accounts(db_url, *ledger_worker.ACCOUNTS)
    work = ledger_worker.plan(SEED)
    rng = random.Random(SEED)
    progress = []
    total = sum(len(rows) for _, rows in work)
    server = ForkServer(db_url)
    try:
        with psycopg.connect(db_url, autocommit=True) as watch:
            for kill in range(KILLS):
                # Kills spread over the plan by its progress, not by the clock (a quiet machine
                # finishes the whole plan in about a second): wait until the ledger holds this
                # kill's share of the entries, then strike at a random moment of what runs next.
                target = total * (kill + 1) // (KILLS + 2)
                pid = server.start()
                deadline = time.monotonic() + 60
                while (
                    watch.execute("SELECT count(*) FROM billing.credit_transactions").fetchone()[0] < target
                    and time.monotonic() < deadline
                ):
                    time.sleep(0.002)
                time.sleep(rng.uniform(0.0, 0.02))
                with contextlib.suppress(ProcessLookupError):  # the worker finished first: the check below still holds
                    os.kill(pid, signal.SIGKILL)
                assert server.wait() in (signal.SIGKILL, 0)  # killed (or, rarely, already done)
                progress.append(len(check_ledger(db_url, work)))
        server.start()  # once more, to the end
        assert server.wait() == 0
    finally:
        server.close()
    keys = check_ledger(db_url, work)
    print("entries after each kill:", progress)
    assert len(keys) == sum(len(rows) for _, rows in work)
    assert progress[-1] < len(keys), "every kill came after the work ended: kill sooner"
    assert len(set(progress)) >= 5, f"the kills all landed at the same few points: {progress}"
    with psycopg.connect(db_url) as conn:
        balances = dict(conn.execute("SELECT account_id, balance FROM billing.credits").fetchall())
    for account in ledger_worker.ACCOUNTS:
        expected = sum(ledger_worker.signed(t, amount) for _, rows in work for a, t, amount, _ in rows if a == account)
        assert balances[account] == expected.quantize(Decimal("0.000001"))


def _parallel(calls, workers: int = 25):
    barrier = threading.Barrier(workers)

    def call(fn):
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=30)
        return fn()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(call, calls))


def test_fifty_identical_topups_at_once_post_once(db_url, capsys):
    create_accounts(db_url, "acme")
    codes = _parallel([lambda: main(["topup", "acme", "10", "--reference", "same-payment"])] * 50)
    assert codes == [0] * 50
    out = capsys.readouterr().out
    assert out.count("Posted topup") == 1 and out.count("Already posted") == 49
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*), sum(amount) FROM billing.credit_transactions").fetchone() == (
            1,
            Decimal(10),
        )


def test_fifty_concurrent_adjustments_each_sent_twice_post_fifty(db_url, capsys):
    create_accounts(db_url, "acme")
    rng = random.Random(SEED)
    amounts = [f"{rng.choice('+-')}{rng.randint(1, 9999)}.{rng.randint(0, 999999):06d}" for _ in range(50)]
    calls = [
        lambda i=i: main(["adjust", "acme", amounts[i], "--reason", f"case {i}", "--actor", "ops", "--yes"])
        for i in range(50)
    ] * 2
    rng.shuffle(calls)
    assert _parallel(calls) == [0] * 100
    with psycopg.connect(db_url) as conn:
        count, total = conn.execute("SELECT count(*), sum(amount) FROM billing.credit_transactions").fetchone()
        assert (count, total) == (50, sum(Decimal(a) for a in amounts))
        assert conn.execute("SELECT balance FROM billing.credits").fetchone()[0] == total
        assert verify_ledger(conn).ok


def test_two_deduction_runs_at_once_deduct_each_hour_once(db_url):
    """What two `billing run`s at once do to the ledger: both settle the same hours, from two processes."""
    from tests.support.payments import create_priced_usage_mart, post, replace_priced_usage

    hour = datetime(2026, 11, 24, 10, tzinfo=UTC)
    create_accounts(db_url, "acme", "globex")
    post(db_url, "acme", "topup", "100", "t1")
    create_priced_usage_mart(db_url)
    replace_priced_usage(
        db_url, hour, [("acme", "workload_consumption", "cpu", "12.5"), ("globex", "machine_rental", "machine", "15")]
    )
    script = (
        "import sys, psycopg; from datetime import datetime, timedelta, timezone; "
        "from billing_pipeline.ledger.deduction import settle_priced_usage; "
        "h = datetime(2026, 11, 24, 10, tzinfo=timezone.utc); "
        "conn = psycopg.connect(sys.argv[1]); print(settle_priced_usage(conn, h, h + timedelta(hours=1)).posted)"
    )
    runs = [
        subprocess.Popen([sys.executable, "-c", script, db_url], cwd=REPO, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    posted = sorted(int(r.communicate(timeout=60)[0]) for r in runs)
    assert posted == [0, 2] and all(r.returncode == 0 for r in runs)
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT account_id, amount FROM billing.credit_transactions "
            "WHERE type = 'usage_deduction' ORDER BY account_id"
        ).fetchall()
        assert rows == [("acme", Decimal("-12.5")), ("globex", Decimal("-15"))]
        assert verify_ledger(conn).ok
