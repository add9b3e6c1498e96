"""The batch path writes what posting the same entries one by one writes (issue 24, point 4).

A batch is cut per account into segments (posting.py, grants.py); posting each entry alone
makes every entry a segment of its own, so the two agree only if the cutting is right: at class
changes, and among debits where one of the account's grants expires. Random sequences of
top-ups, promotional grants (some expiring between the usage hours) and usage deductions are
posted once as one batch and once entry by entry, for two pairs of accounts; the grants, draws,
balances and debts, the entries' amounts and running balances must be the same, and both
chains must verify.
"""

from __future__ import annotations

import itertools
from decimal import Decimal

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing_pipeline.ledger import Entry, post_entries, verify_ledger
from billing_pipeline.ledger.grants import check_grants
from tests.support.grants import h, usage
from tests.support.platform import create_accounts

D = Decimal
_examples = itertools.count()

amounts = st.decimals(min_value=D("0.000001"), max_value=D("40"), places=6)
operation = st.one_of(
    st.tuples(st.just("topup"), st.sampled_from("xy"), amounts, st.just(0)),
    st.tuples(st.just("grant"), st.sampled_from("xy"), amounts, st.integers(min_value=0, max_value=6)),
    st.tuples(st.just("usage"), st.sampled_from("xy"), amounts, st.integers(min_value=0, max_value=23)),
)


def _entries(ops, accounts: dict[str, str], prefix: str) -> list[Entry]:
    out = []
    for n, (kind, who, amount, when) in enumerate(ops):
        account, key = accounts[who], f"{prefix}-{n}"
        if kind == "topup":
            out.append(Entry(account, "topup", amount, key))
        elif kind == "grant":  # expires at one of the usage hours, or never (0)
            terms = {"grant": {"expires_at": h(3, 4 * when - 1)}} if when else {}
            out.append(Entry(account, "promotional_grant", amount, key, terms))
        else:
            out.append(usage(account, f"-{amount}", h(3, when), key))
    return out


def _state(conn, accounts: dict[str, str], prefix: str) -> list[tuple]:
    """Everything the posting wrote for these accounts, with ids replaced by the entries' keys
    (without their prefix) and accounts by their role (x, y)."""
    role = {v: k for k, v in accounts.items()}
    names = {
        i: k.removeprefix(prefix + "-")
        for i, k in conn.execute(
            "SELECT id, idempotency_key FROM billing.credit_transactions WHERE account_id = ANY(%s)",
            (list(accounts.values()),),
        )
    }
    ids = list(names)
    return [
        (
            "entries",
            [
                (role[a], names[i], s, t, amt, bal)
                for i, a, s, t, amt, bal in conn.execute(
                    "SELECT id, account_id, account_seq, type, amount, balance_after FROM billing.credit_transactions "
                    "WHERE id = ANY(%s) ORDER BY account_id, account_seq",
                    (ids,),
                )
            ],
        ),
        (
            "grants",
            [
                (names[e], role[a], k, p, x, g)
                for e, a, k, p, x, g in conn.execute(
                    "SELECT entry_id, account_id, kind, priority, expires_at, granted FROM billing.grants "
                    "WHERE entry_id = ANY(%s) ORDER BY entry_id",
                    (ids,),
                )
            ],
        ),
        (
            "draws",
            [
                (names[e], names[g], amt)
                for e, g, amt in conn.execute(
                    "SELECT entry_id, grant_entry_id, amount FROM billing.grant_draws WHERE entry_id = ANY(%s) ORDER BY entry_id, id",
                    (ids,),
                )
            ],
        ),
        (
            "balances",
            [
                (names[g], d, x, r)
                for g, d, x, r in conn.execute(
                    "SELECT grant_entry_id, drawn, expired, remaining FROM billing.grant_balances "
                    "WHERE grant_entry_id = ANY(%s) ORDER BY 1",
                    (ids,),
                )
            ],
        ),
        (
            "debts",
            [
                (names[e], o)
                for e, o in conn.execute(
                    "SELECT entry_id, outstanding FROM billing.grant_debts WHERE entry_id = ANY(%s) ORDER BY 1", (ids,)
                )
            ],
        ),
        (
            "credits",
            [
                (role[a], b)
                for a, b in conn.execute(
                    "SELECT account_id, balance FROM billing.credits WHERE account_id = ANY(%s) ORDER BY 1",
                    (list(accounts.values()),),
                )
            ],
        ),
    ]


@pytest.fixture
def ledger(db_url, frozen_clock):
    frozen_clock.set("2026-11-03T06:30Z")  # some grants have expired by some usage hours, not by now
    return db_url


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(operation, min_size=1, max_size=40))
def test_one_batch_writes_what_posting_its_entries_one_by_one_writes(ledger, ops):
    n = next(_examples)
    batched = {"x": f"b{n}x", "y": f"b{n}y"}
    single = {"x": f"s{n}x", "y": f"s{n}y"}
    create_accounts(ledger, *batched.values(), *single.values())
    with psycopg.connect(ledger, autocommit=True) as conn:
        post_entries(conn, _entries(ops, batched, f"b{n}"))
        for entry in _entries(ops, single, f"s{n}"):
            post_entries(conn, [entry])
        assert _state(conn, batched, f"b{n}") == _state(conn, single, f"s{n}")
        assert check_grants(conn, list(batched.values()) + list(single.values())).problems == []
        assert verify_ledger(conn).ok
