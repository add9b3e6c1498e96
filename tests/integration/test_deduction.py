"""Usage deduction against real PostgreSQL: exact amounts, exactly once, differences on change."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import psycopg
import pytest

from billing_pipeline.ledger import balance_of, verify_ledger
from billing_pipeline.ledger.deduction import settle_priced_usage
from tests.support.payments import create_priced_usage_mart, replace_priced_usage
from tests.support.platform import create_accounts

D = Decimal
H = datetime(2026, 11, 24, 10, tzinfo=UTC)
W = "workload_consumption"
M = "machine_rental"


@pytest.fixture
def usage_db(db_url):
    create_accounts(db_url, "acme", "globex")
    create_priced_usage_mart(db_url)
    return db_url


def entries(url):
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT account_id, type, amount, idempotency_key, reference FROM billing.credit_transactions ORDER BY id"
        ).fetchall()


def test_one_deduction_per_account_hour_and_kind_equal_to_the_mart(usage_db):
    replace_priced_usage(
        usage_db,
        H,
        [
            ("acme", W, "cpu", "0.1234564"),
            ("acme", W, "memory", "0.0000001"),  # 0.1234565 -> 0.123456 (half-even)
            ("acme", M, "machine", "1.5"),
            ("globex", W, "cpu", "2.0000025"),  # -> 2.000002
        ],
    )
    with psycopg.connect(usage_db) as conn:
        result = settle_priced_usage(conn, H, H + timedelta(hours=1))
        assert result.deductions == 3 and result.posted == 3
        rows = entries(usage_db)
        assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
            ("acme", "usage_deduction", D("-1.500000"), "usage:acme:2026-11-24T10:00:00+00:00:machine_rental"),
            ("acme", "usage_deduction", D("-0.123456"), "usage:acme:2026-11-24T10:00:00+00:00:workload_consumption"),
            (
                "globex",
                "usage_deduction",
                D("-2.000002"),
                "usage:globex:2026-11-24T10:00:00+00:00:workload_consumption",
            ),
        ]
        ref = rows[1][4]
        assert ref["hour"] == "2026-11-24T10:00:00+00:00" and ref["usage_kind"] == W and ref["account_id"] == "acme"
        # The mart's amount is numeric(38, 20) (its contract), so the text carries 20 places.
        assert D(ref["owed"]) == D("0.123456") and "is_estimate" not in ref
        assert balance_of(conn, "acme") == D("-1.623456")
        # The ledger's view of each hour equals the mart's, to the micro-credit.
        mismatches = conn.execute("""
            SELECT u.account_id, u.usage_kind FROM (
                SELECT account_id, usage_kind, sum(amount) AS owed FROM analytics.fct_priced_usage GROUP BY 1, 2) u
            JOIN (SELECT account_id, reference->>'usage_kind' AS usage_kind, -sum(amount) AS deducted
                  FROM billing.credit_transactions GROUP BY 1, 2) t USING (account_id, usage_kind)
            WHERE abs(u.owed - t.deducted) >= 0.000001""").fetchall()
        assert mismatches == []


def test_running_twice_posts_nothing_more(usage_db):
    replace_priced_usage(usage_db, H, [("acme", W, "cpu", "3"), ("globex", M, "machine", "4")])
    with psycopg.connect(usage_db) as conn:
        first = settle_priced_usage(conn, H, H + timedelta(hours=1))
        second = settle_priced_usage(conn, H, H + timedelta(hours=1))
        everything = settle_priced_usage(conn)
    assert first.posted == 2 and second.posted == 0 and everything.posted == 0
    assert len(entries(usage_db)) == 2


def test_two_runs_at_once_post_once(usage_db):
    accounts = [f"acc{i:03d}" for i in range(200)]
    create_accounts(usage_db, *accounts)
    replace_priced_usage(usage_db, H, [(a, W, "cpu", f"{i}.5") for i, a in enumerate(accounts, 1)])
    barrier = threading.Barrier(3)
    results, errors = [], []

    def run():
        try:
            with psycopg.connect(usage_db) as conn:
                barrier.wait()
                results.append(settle_priced_usage(conn, H, H + timedelta(hours=1)))
        except Exception as exc:  # pragma: no cover - surfaced by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(r.posted for r in results) == [0, 0, 200]
    rows = entries(usage_db)
    assert len(rows) == 200
    assert sum(r[2] for r in rows) == -sum(D(f"{i}.5") for i in range(1, 201))
    with psycopg.connect(usage_db) as conn:
        assert verify_ledger(conn).ok


def test_changed_usage_posts_exactly_the_difference(usage_db):
    window = (H, H + timedelta(hours=1))
    replace_priced_usage(
        usage_db, H, [("acme", W, "cpu", "10"), ("globex", W, "cpu", "5"), ("globex", M, "machine", "2")]
    )
    with psycopg.connect(usage_db) as conn:
        settle_priced_usage(conn, *window)
        original = {
            r[3]: r
            for r in conn.execute(
                "SELECT id, account_id, amount, idempotency_key FROM billing.credit_transactions"
            ).fetchall()
        }
        # Late data: acme used more; globex was over-charged; globex's rental vanished.
        replace_priced_usage(
            usage_db, H, [("acme", W, "cpu", "10"), ("acme", W, "gpu", "2.25"), ("globex", W, "cpu", "4.000001")]
        )
        result = settle_priced_usage(conn, *window)
        assert (result.adjustments, result.reversals, result.deductions) == (1, 2, 0)
        again = settle_priced_usage(conn, *window)
        assert again.posted == 0
        assert balance_of(conn, "acme") == D("-12.25")
        assert balance_of(conn, "globex") == D("-4.000001")
    rows = entries(usage_db)[3:]
    by_key = {r[3]: r for r in rows}
    acme_adj = by_key[f"usage:acme:2026-11-24T10:00:00+00:00:{W}:2"]
    assert acme_adj[1] == "usage_deduction" and acme_adj[2] == D("-2.25")
    assert acme_adj[4]["adjusts"] == original[f"usage:acme:2026-11-24T10:00:00+00:00:{W}"][0]
    globex_rev = by_key[f"usage:globex:2026-11-24T10:00:00+00:00:{W}:2"]
    assert globex_rev[1] == "reversal" and globex_rev[2] == D("0.999999")
    assert globex_rev[4]["reverses"] == original[f"usage:globex:2026-11-24T10:00:00+00:00:{W}"][0]
    rental_rev = by_key[f"usage:globex:2026-11-24T10:00:00+00:00:{M}:2"]
    assert rental_rev[1] == "reversal" and rental_rev[2] == D("2")
    # Back to the original figures: the differences are posted again, under new keys.
    replace_priced_usage(
        usage_db, H, [("acme", W, "cpu", "10"), ("globex", W, "cpu", "5"), ("globex", M, "machine", "2")]
    )
    with psycopg.connect(usage_db) as conn:
        result = settle_priced_usage(conn, *window)
        assert result.posted == 3
        assert balance_of(conn, "acme") == D("-10") and balance_of(conn, "globex") == D("-7")
        assert verify_ledger(conn).ok


def test_estimated_hour_is_settled_then_corrected(usage_db):
    replace_priced_usage(usage_db, H, [("acme", W, "cpu", "8", True)])
    with psycopg.connect(usage_db) as conn:
        settle_priced_usage(conn, H, H + timedelta(hours=1))
        replace_priced_usage(usage_db, H, [("acme", W, "cpu", "8.5", False)])
        settle_priced_usage(conn, H, H + timedelta(hours=1))
        assert balance_of(conn, "acme") == D("-8.5")
    rows = entries(usage_db)
    assert [r[4].get("is_estimate", False) for r in rows] == [True, False]
    assert [r[2] for r in rows] == [D("-8"), D("-0.5")]


def test_other_hours_are_left_alone_and_unknown_accounts_reported(usage_db):
    replace_priced_usage(usage_db, H, [("acme", W, "cpu", "1")])
    replace_priced_usage(usage_db, H + timedelta(hours=1), [("acme", W, "cpu", "2"), ("ghost", W, "cpu", "9")])
    with psycopg.connect(usage_db) as conn:
        first = settle_priced_usage(conn, H, H + timedelta(hours=1))
        assert first.posted == 1 and first.unknown_accounts == []
        second = settle_priced_usage(conn, H + timedelta(hours=1), H + timedelta(hours=2))
        assert second.posted == 1 and second.unknown_accounts == ["ghost"]
        assert balance_of(conn, "acme") == D("-3")
