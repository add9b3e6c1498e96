"""The lifecycle state machine through the persisted engine: a property test."""

from __future__ import annotations

import itertools
from datetime import timedelta
from decimal import Decimal

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing_pipeline.lifecycle.machine import Inputs, Snapshot, State, step
from tests.support.kube import set_balance
from tests.support.platform import create_accounts
from tests.unit.test_lifecycle_machine import T0, balances

_ids = itertools.count()


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.tuples(balances, st.integers(min_value=0, max_value=50 * 60), st.booleans()), min_size=1, max_size=12)
)
def test_property_through_the_database(db_url, seq):
    """Random balances and clock moves through the persisted engine (no cluster objects): every
    transition is recorded exactly once, in order, and none is lost when a run is repeated."""
    from billing_pipeline.lifecycle.engine import run_lifecycle

    account = f"prop-{next(_ids)}"
    create_accounts(db_url, account)
    with psycopg.connect(db_url) as conn:
        conn.execute("UPDATE billing.accounts SET grace_period_hours = 24 WHERE id = %s", (account,))
    now = T0
    snap = Snapshot(State.HEALTHY, T0)
    with psycopg.connect(db_url, autocommit=True) as conn:
        for balance, minutes, repeat in seq:
            now += timedelta(minutes=minutes)
            set_balance(db_url, account, balance)
            for _ in range(2 if repeat else 1):
                report = run_lifecycle(conn, None, now, account_ids=[account])
                assert report.errors == []
            snap = step(snap, Inputs(balance, Decimal("10"), 24), now).snapshot
            state, transitions = conn.execute(
                "SELECT state, transitions FROM billing.account_lifecycle WHERE account_id = %s", (account,)
            ).fetchone()
            assert (state, transitions) == (snap.state.value, snap.transitions)
            if balance > 0:
                assert state in ("healthy", "low_balance")
        keys = [
            r[0]
            for r in conn.execute(
                "SELECT event_key FROM billing.lifecycle_events WHERE account_id = %s AND kind = 'transition' ORDER BY id",
                (account,),
            ).fetchall()
        ]
    assert keys == [f"{account}:transition:{i}" for i in range(1, snap.transitions + 1)]
