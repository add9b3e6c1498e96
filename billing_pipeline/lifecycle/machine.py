"""The account lifecycle as a pure state machine (docs/rules/lifecycle.md). No I/O: ``now`` is an input.

States: ``healthy`` (balance above the threshold), ``low_balance`` (0 < balance <= threshold),
``grace_period`` (balance <= 0; deadline = entry + grace_period_hours) and ``expired`` (the
deadline passed with the balance still <= 0).

Rules that make destruction safe:

* the deadline is set when the job *observes* the balance at or below zero (never backdated),
  so the grace-entry notice always precedes expiry by ``grace_period_hours``;
* ``expired`` is reachable only from ``grace_period``, only at or after its deadline, and only
  while the balance is <= 0;
* a positive balance in grace recovers (routing restored); in ``expired`` it re-activates the
  account (what was deleted stays deleted).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

# "Idle", for early_idle_deletion during grace: over the IDLE_WINDOW_HOURS complete UTC hours before
# now, every hour ingested complete, the deployment existed the whole window, used under
# IDLE_CPU_CORE_HOURS of CPU in total and sent under IDLE_EGRESS_GIB of network egress in total.
IDLE_WINDOW_HOURS = 24
IDLE_CPU_CORE_HOURS = Decimal("0.01")
IDLE_EGRESS_GIB = Decimal("0.001")


def is_idle(cpu_core_hours: Decimal, egress_gib: Decimal) -> bool:
    return cpu_core_hours < IDLE_CPU_CORE_HOURS and egress_gib < IDLE_EGRESS_GIB


class State(StrEnum):
    HEALTHY = "healthy"
    LOW_BALANCE = "low_balance"
    GRACE_PERIOD = "grace_period"
    EXPIRED = "expired"


@dataclass(frozen=True)
class Snapshot:
    """What the machine knows about an account between evaluations (persisted)."""

    state: State
    entered_at: datetime
    grace_deadline: datetime | None = None
    episode: int = 0  # how many grace periods the account has entered
    transitions: int = 0  # how many transitions have been recorded


@dataclass(frozen=True)
class Inputs:
    balance: Decimal
    low_balance_threshold: Decimal
    grace_period_hours: int


@dataclass(frozen=True)
class Transition:
    seq: int  # the account's transition number, 1-based: the event's idempotency key
    from_state: State
    to_state: State
    at: datetime
    balance: Decimal
    grace_deadline: datetime | None
    episode: int
    reason: str


@dataclass(frozen=True)
class Decision:
    snapshot: Snapshot
    transitions: list[Transition] = field(default_factory=list)


def state_for_balance(balance: Decimal, threshold: Decimal) -> State:
    """The state the balance alone implies (docs/rules/lifecycle.md): the one owner of this rule.

    ``balance <= 0`` -> grace_period (expiry needs the persisted deadline, so the balance alone
    never says ``expired``); ``0 < balance <= threshold`` -> low_balance; else healthy. The
    report, the CLI, the balance alerts (``state_sql``) and the dbt macro
    ``lifecycle_state_for_balance`` (checked against ``state_sql`` by the tests) all ask here.
    """
    if balance <= 0:
        return State.GRACE_PERIOD
    if balance <= threshold:
        return State.LOW_BALANCE
    return State.HEALTHY


def state_sql(balance: str, threshold: str) -> str:
    """``state_for_balance`` as a SQL expression over the columns (or expressions) given."""
    return (
        f"CASE WHEN {balance} <= 0 THEN '{State.GRACE_PERIOD.value}' "
        f"WHEN {balance} <= {threshold} THEN '{State.LOW_BALANCE.value}' "
        f"ELSE '{State.HEALTHY.value}' END"
    )


def initial(now: datetime) -> Snapshot:
    return Snapshot(State.HEALTHY, now)


def step(snapshot: Snapshot, inputs: Inputs, now: datetime) -> Decision:
    """Where the account goes given its balance at ``now``, and the transitions on the way.

    Evaluating the result again with the same inputs and ``now`` yields no transition.
    """
    if now.tzinfo is None:
        raise ValueError("the lifecycle clock must be timezone-aware (UTC)")
    balance = inputs.balance
    snap = snapshot
    out: list[Transition] = []

    def move(to: State, reason: str, *, deadline: datetime | None, episode: int) -> None:
        nonlocal snap
        out.append(Transition(snap.transitions + 1, snap.state, to, now, balance, deadline, episode, reason))
        snap = Snapshot(to, now, deadline, episode, snap.transitions + 1)

    if balance > 0:
        target = state_for_balance(balance, inputs.low_balance_threshold)
        if snap.state != target:
            reason = {
                State.GRACE_PERIOD: "recovered: the balance is above zero again before the deadline",
                State.EXPIRED: "re-activated after expiry: the balance is above zero again",
            }.get(snap.state, f"balance {balance} against threshold {inputs.low_balance_threshold}")
            move(target, reason, deadline=None, episode=snap.episode)
        return Decision(snap, out)

    # balance <= 0
    if snap.state in (State.HEALTHY, State.LOW_BALANCE):
        deadline = now + timedelta(hours=inputs.grace_period_hours)
        move(State.GRACE_PERIOD, f"balance {balance} is at or below zero", deadline=deadline, episode=snap.episode + 1)
    if snap.state == State.GRACE_PERIOD and snap.grace_deadline is not None and now >= snap.grace_deadline:
        move(
            State.EXPIRED,
            f"grace deadline {snap.grace_deadline.isoformat()} passed with balance {balance}",
            deadline=snap.grace_deadline,
            episode=snap.episode,
        )
    return Decision(snap, out)
