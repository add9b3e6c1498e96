"""Issue 11, point 8: Hypothesis over the posting API against real PostgreSQL.

Any sequence of posts, batches, duplicate keys (same or different content), reversals and
adjustments, interleaved over two accounts, keeps every balance equal to the sum of its ledger
and to a model of what should have been posted once, and `verify` holds after each sequence.
"""

from __future__ import annotations

import itertools
from decimal import Decimal

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing_pipeline.ledger import Entry, IdempotencyConflict, balance_of, post_entries, verify_ledger
from tests.support.platform import create_accounts

RUN = itertools.count()
amounts = st.decimals(min_value=Decimal("0.000001"), max_value=Decimal("100000"), places=6)
operation = st.tuples(
    st.sampled_from(["topup", "usage_deduction", "admin_adjustment", "sla_credit", "reversal", "auto_topup"]),
    st.integers(0, 1),  # which account
    amounts,
    st.booleans(),  # sign for adjustments
    st.integers(0, 7),  # key from a small pool: duplicates are frequent
    st.integers(1, 3),  # batch size (this op repeated with the next keys)
)


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(operation, min_size=1, max_size=12))
def test_any_interleaving_keeps_balance_equal_to_the_sum_and_verify_holds(db_url, ops):
    run = next(RUN)
    accounts = [f"p{run}a", f"p{run}b"]
    create_accounts(db_url, *accounts)
    posted: dict[str, Entry] = {}  # the model: what each key means, once posted
    with psycopg.connect(db_url) as conn:
        for kind, which, amount, negative, key_no, size in ops:
            batch = []
            for k in range(size):
                key = f"{run}:{(key_no + k) % 8}"
                account = accounts[which]
                if kind == "reversal":
                    target = next(
                        (e for e in posted.values() if e.account_id == account and e.type != "reversal"), None
                    )
                    if target is None:
                        continue
                    entry = Entry(
                        account, "reversal", -target.amount, key, reference={"reverses": target.idempotency_key}
                    )
                else:
                    signed = (
                        -amount if kind == "usage_deduction" or (kind == "admin_adjustment" and negative) else amount
                    )
                    entry = Entry(account, kind, signed, key, reason="property test", actor="hypothesis")
                batch.append(entry)
            if not batch:
                continue
            conflict = False
            seen: dict[str, Entry] = {}
            for e in batch:
                prior = posted.get(e.idempotency_key) or seen.get(e.idempotency_key)
                if prior and (prior.account_id, prior.type, prior.amount) != (e.account_id, e.type, e.amount):
                    conflict = True
                seen.setdefault(e.idempotency_key, e)
            try:
                results = post_entries(conn, batch)
            except IdempotencyConflict:
                assert conflict  # refused whole: the model is unchanged
                continue
            assert not conflict
            for e, result in zip(batch, results):
                assert result.created == (e.idempotency_key not in posted)
                posted.setdefault(e.idempotency_key, e)
        for account in accounts:
            expected = sum((e.amount for e in posted.values() if e.account_id == account), Decimal(0))
            in_ledger = conn.execute(
                "SELECT coalesce(sum(amount), 0), count(*) FROM billing.credit_transactions WHERE account_id = %s",
                (account,),
            ).fetchone()
            assert balance_of(conn, account) == in_ledger[0] == expected
            assert in_ledger[1] == sum(1 for e in posted.values() if e.account_id == account)
        report = verify_ledger(conn)
        assert report.ok, report.problems
