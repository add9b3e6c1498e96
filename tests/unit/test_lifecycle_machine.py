"""The lifecycle state machine: pure transitions (through the database: tests/integration/test_lifecycle_machine_db.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from billing_pipeline.lifecycle.machine import Inputs, Snapshot, State, step

T0 = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)
INP = dict(low_balance_threshold=Decimal("10"), grace_period_hours=72)


def test_transitions_follow_the_contract():
    s = Snapshot(State.HEALTHY, T0)
    d = step(s, Inputs(Decimal("5"), **INP), T0)
    assert [t.to_state for t in d.transitions] == [State.LOW_BALANCE]
    d = step(d.snapshot, Inputs(Decimal("0"), **INP), T0 + timedelta(hours=1))
    assert d.snapshot.state == State.GRACE_PERIOD and d.snapshot.grace_deadline == T0 + timedelta(hours=73)
    assert d.snapshot.episode == 1
    g = d.snapshot
    assert step(g, Inputs(Decimal("-1"), **INP), T0 + timedelta(hours=72, minutes=59)).transitions == []
    e = step(g, Inputs(Decimal("-1"), **INP), T0 + timedelta(hours=73))
    assert [t.to_state for t in e.transitions] == [State.EXPIRED]
    r = step(g, Inputs(Decimal("0.000001"), **INP), T0 + timedelta(hours=80))  # paid late but before a run saw it
    assert [t.to_state for t in r.transitions] == [State.LOW_BALANCE]
    again = step(e.snapshot, Inputs(Decimal("50"), **INP), T0 + timedelta(hours=90))
    assert [(t.from_state, t.to_state) for t in again.transitions] == [(State.EXPIRED, State.HEALTHY)]
    zero = step(Snapshot(State.HEALTHY, T0), Inputs(Decimal("-1"), Decimal("10"), 0), T0)
    assert [t.to_state for t in zero.transitions] == [State.GRACE_PERIOD, State.EXPIRED]


balances = st.decimals(min_value=Decimal("-50"), max_value=Decimal("50"), places=2, allow_nan=False)
moves = st.lists(st.tuples(balances, st.integers(min_value=0, max_value=100 * 60)), min_size=1, max_size=30)


def _check_sequence(seq, grace_hours: int) -> None:
    snap = Snapshot(State.HEALTHY, T0)
    now = T0
    seqs = []
    grace_entered_at = None
    for balance, minutes in seq:
        now += timedelta(minutes=minutes)
        d = step(snap, Inputs(balance, Decimal("10"), grace_hours), now)
        for t in d.transitions:
            seqs.append(t.seq)
            if t.to_state == State.GRACE_PERIOD:
                grace_entered_at = now
                assert t.grace_deadline == now + timedelta(hours=grace_hours)
            if t.to_state == State.EXPIRED:
                # No cleanup before the deadline, never while the balance is positive,
                # and only from a grace period announced at least grace_hours earlier.
                assert balance <= 0 and t.from_state == State.GRACE_PERIOD
                assert now >= t.grace_deadline >= grace_entered_at + timedelta(hours=grace_hours)
        if balance > 0:
            assert d.snapshot.state in (State.HEALTHY, State.LOW_BALANCE)
        # Evaluating again at the same clock changes nothing: transitions are recorded once.
        assert step(d.snapshot, Inputs(balance, Decimal("10"), grace_hours), now).transitions == []
        snap = d.snapshot
    assert seqs == list(range(1, len(seqs) + 1)) and snap.transitions == len(seqs)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(moves, st.sampled_from([0, 1, 24, 72]))
def test_property_pure_machine(seq, grace_hours):
    _check_sequence(seq, grace_hours)
