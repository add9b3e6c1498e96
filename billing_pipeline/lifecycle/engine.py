"""The lifecycle acting on the cluster: one evaluation of every account at a given ``now``.

For each account, in order:

1. **Decide** (one transaction, the account's lifecycle row locked): the pure machine
   (``machine.step``) moves the state; each transition is recorded once (its key is the account's
   transition number) together with its database effects and its notice: entering grace suspends
   the domains and queues the notice with the deadline and what will happen; recovering
   re-activates the domains; expiry opens a cleanup for each live deployment.
2. **Reconcile the cluster** to the state: outside grace, routing restored and Deployments scaled
   back (``routing``, ``scaling``); in grace, routing switched to the suspension page, Deployments
   scaled to zero once ``scale_to_zero_after_hours`` passed, idle deployments cleaned early
   (``idle``); pending cleanups carried out (``cleanup``, ``snapshots``); snapshots past their
   retention deleted.

A transition into ``low_balance`` or ``grace_period`` says why when credits expired since the
account's previous evaluation (``grant_expiry`` entries after the newest entry that evaluation
saw): its reason starts with "promotional credits expired" (or paid, SLA …), its event's detail
carries ``cause`` (each grant, amount and expiry), and the grace notice says so.

Every cluster write is recorded in ``lifecycle_events`` after it succeeds, under a unique key, so
a re-run records nothing twice; each action's current state (pending, done, failed with its
error) is kept in ``lifecycle_actions`` for ``billing status`` (``actions``). A failed call
(403, 409, 422, 5xx) is recorded as ``failed``, leaves its step pending and stops that account.
Progress lives in the database, so a run killed at any point completes on the next one.

Dry-run computes the same decisions and plans, records each as a ``dry_run`` event
(``would_do``) and changes nothing: no state, no domains, no notices, no cluster writes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import psycopg

from billing_pipeline.core.errors import BillingError
from billing_pipeline.lifecycle import cleanup, idle, notices, routing, scaling, snapshots, store
from billing_pipeline.lifecycle.machine import Inputs, Snapshot, State, Transition, step
from billing_pipeline.lifecycle.notices import volume_fate_line  # noqa: F401  (re-exported)
from billing_pipeline.lifecycle.store import Account, Deployment, fmt_time
from billing_pipeline.notifications.outbox import enqueue_notification
from billing_pipeline.resources.cluster import Cluster, ClusterCallError

log = logging.getLogger(__name__)


@dataclass
class AccountOutcome:
    account_id: str
    state: str
    transitions: list[Transition] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class RunReport:
    now: datetime
    dry_run: bool
    accounts: list[AccountOutcome] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        return [f"{a.account_id}: {a.error}" for a in self.accounts if a.error]


class Lifecycle:
    """Evaluates accounts at ``now`` against the database (``conn``, autocommit) and ``cluster``.

    The concern modules (``routing``, ``scaling``, ``cleanup``, ``snapshots``, ``idle``) receive it
    as ``lc``: its connection, cluster, clock, dry-run flag, and ``event``/``notify``/``failed``.
    """

    def __init__(
        self,
        conn: psycopg.Connection,
        cluster: Cluster | None,
        now: datetime,
        *,
        dry_run: bool = False,
        connect_cluster: Callable[[], Cluster | None] | None = None,
    ):
        if now.tzinfo is None:
            raise BillingError(
                f"lifecycle clock {now.isoformat()} has no timezone; give it in UTC, e.g. 2026-11-25T14:00:00Z."
            )
        if not conn.autocommit:
            raise BillingError("the lifecycle needs an autocommit connection (it commits each step itself).")
        self.conn = conn
        self._cluster = cluster
        self._connect_cluster = connect_cluster if cluster is None else None
        self.now = now.astimezone(UTC)
        self.dry_run = dry_run

    @property
    def cluster(self) -> Cluster | None:
        """The cluster; with ``connect_cluster`` instead, connected the first time an account
        needs it (an hour in which every account is quiet never builds a Kubernetes client)."""
        if self._connect_cluster is not None:
            connect, self._connect_cluster = self._connect_cluster, None
            self._cluster = connect()
        return self._cluster

    def need_cluster(self) -> Cluster:
        if self.cluster is None:
            raise BillingError(
                "no cluster is configured, so nothing was changed on it: set KUBECONFIG to a "
                "kubeconfig file (or run inside the cluster), then re-run grace_period_job."
            )
        return self.cluster

    def event(self, **kw) -> bool:
        if self.dry_run:
            kw = {
                **kw,
                "key": f"dry-run@{self.now.isoformat()}:{kw['key']}",
                "kind": "dry_run",
                "outcome": "would_do",
                "detail": {**(kw.get("detail") or {}), "would": kw["kind"]},
            }
        return store.record_event(self.conn, decided_at=self.now, **kw)

    def failed(
        self, account: Account, dep_id: str | None, step_key: str, action: str, target: dict, exc: ClusterCallError
    ) -> None:
        if self.dry_run:
            return
        n = store.count_events(self.conn, f"{account.id}:failed:{step_key}:")
        store.record_event(
            self.conn,
            key=f"{account.id}:failed:{step_key}:{n + 1}",
            account_id=account.id,
            deployment_id=dep_id,
            kind="cluster_call",
            action=action,
            outcome="failed",
            target=target,
            detail={"error": str(exc), "http_status": exc.status},
            decided_at=self.now,
        )

    def notify(self, account: Account, dedupe_key: str, kind: str, subject: str, body: str, payload: dict) -> None:
        if self.dry_run:
            self.event(
                key=f"notice:{dedupe_key}",
                account_id=account.id,
                kind="notice",
                action=kind,
                outcome="done",
                detail={"subject": subject},
            )
            return
        if enqueue_notification(
            self.conn,
            account_id=account.id,
            kind=f"lifecycle_{kind}",
            dedupe_key=dedupe_key,
            subject=subject,
            body=body,
            payload={**payload, "account_id": account.id},
        ):
            self.event(
                key=f"notice:{dedupe_key}",
                account_id=account.id,
                kind="notice",
                action=kind,
                outcome="done",
                detail={"subject": subject, "dedupe_key": dedupe_key},
            )

    # ---- entry point
    def run(self, account_ids: Iterable[str] | None = None) -> RunReport:
        report = RunReport(self.now, self.dry_run)
        if account_ids is None:
            # Every account: those with nothing to do are settled in one statement, the rest
            # one by one.
            quiet = store.settle_quiet_accounts(self.conn, self.now, record=not self.dry_run)
            report.accounts.extend(AccountOutcome(a, State.HEALTHY.value) for a in quiet)
            skip = set(quiet)
            account_ids = [a for a in store.account_ids(self.conn) if a not in skip]
        for account_id in account_ids:
            outcome = AccountOutcome(account_id, "?")
            try:
                self.evaluate(account_id, outcome)
            except BillingError as exc:
                outcome.error = str(exc)
                log.error("lifecycle of %s: %s", account_id, exc)
            report.accounts.append(outcome)
        return report

    def evaluate(self, account_id: str, outcome: AccountOutcome | None = None) -> AccountOutcome:
        outcome = outcome or AccountOutcome(account_id, "?")
        state = self._decide(account_id, outcome)
        outcome.state = state.value
        account = store.load_account(self.conn, account_id)
        snap = store.lock_snapshot(self.conn, account_id, lock=False)
        episode = snap.episode if snap else 1
        if state in (State.HEALTHY, State.LOW_BALANCE):
            routing.restore(self, account, outcome)
            scaling.restore(self, account, outcome)
        if state == State.GRACE_PERIOD:
            routing.disable(self, account, episode, outcome)
            scaling.scale_down_if_due(self, account, episode, snap.entered_at if snap else self.now, outcome)
            if account.early_idle_deletion:
                idle.delete_idle(self, account, episode, outcome)
        cleanup.run_cleanups(self, account, outcome)
        snapshots.expire(self, account, outcome)
        return outcome

    # ---- 1. decide
    def _decide(self, account_id: str, outcome: AccountOutcome) -> State:
        with self.conn.transaction():
            account = store.load_account(self.conn, account_id)
            if account is None:
                raise BillingError(f"unknown account {account_id!r}: not in billing.accounts.")
            snap = store.lock_snapshot(self.conn, account_id, self.now, lock=not self.dry_run)
            if snap is None:
                snap = Snapshot(State.HEALTHY, self.now)
            decision = step(
                snap, Inputs(account.balance, account.low_balance_threshold, account.grace_period_hours), self.now
            )
            cause = self._expiry_cause(account, decision.transitions)
            transitions = []
            for t in decision.transitions:
                caused = cause if _for_the_worse(t) else None
                if caused:
                    t = replace(t, reason=f"{caused['reason']}: {t.reason}")
                transitions.append(t)
                self.event(
                    key=f"{account_id}:transition:{t.seq}",
                    account_id=account_id,
                    kind="transition",
                    action="transition",
                    from_state=t.from_state.value,
                    to_state=t.to_state.value,
                    outcome="done",
                    detail={
                        "seq": t.seq,
                        "balance": t.balance,
                        "reason": t.reason,
                        "grace_deadline": t.grace_deadline,
                        "episode": t.episode,
                        **({"cause": caused} if caused else {}),
                    },
                )
                self._on_transition(account, t, caused)
            outcome.transitions.extend(transitions)
            if not self.dry_run:
                store.save_snapshot(
                    self.conn, account_id, decision.snapshot, account.balance, self.now, account.last_entry_id
                )
            return decision.snapshot.state

    def _expiry_cause(self, account: Account, transitions: list[Transition]) -> dict | None:
        """The credits that expired since the previous evaluation, when a transition for the worse
        is being made (None otherwise, or when nothing expired)."""
        if not any(_for_the_worse(t) for t in transitions):
            return None
        previous = store.previous_evaluation(self.conn, account.id)
        return notices.expiry_cause(store.credits_expired_since(self.conn, account.id, previous, account.last_entry_id))

    def _on_transition(self, account: Account, t: Transition, cause: dict | None = None) -> None:
        deps = store.live_deployments(self.conn, account.id)
        dep_ids = [d.id for d in deps]
        if t.to_state == State.GRACE_PERIOD:
            self._set_domains(account, dep_ids, "active", "suspended", t)
            lines = self._expiry_lines(account, deps, t.grace_deadline)
            body = notices.grace_body(account, t.balance, t.grace_deadline, t.at, lines)
            self.notify(
                account,
                f"lifecycle:{account.id}:grace:{t.episode}",
                "grace_period",
                f"{account.name}: {cause['reason'] if cause else 'credits used up'}, deletion on "
                f"{fmt_time(t.grace_deadline)}",
                f"{cause['text']}\n\n{body}" if cause else body,
                {
                    "episode": t.episode,
                    "grace_deadline": t.grace_deadline,
                    "balance": t.balance,
                    "will_happen": lines,
                    "scale_to_zero_at": notices.scale_to_zero_at(account, t.at),
                    **({"cause": cause} if cause else {}),
                },
            )
        elif t.from_state == State.GRACE_PERIOD and t.to_state != State.EXPIRED:
            self._set_domains(account, dep_ids, "suspended", "active", t)
            self.notify(
                account,
                f"lifecycle:{account.id}:recovered:{t.episode}",
                "recovered",
                f"{account.name}: service restored",
                notices.recovered_body(account, t.balance, t.grace_deadline),
                {"episode": t.episode},
            )
        elif t.to_state == State.EXPIRED:
            for dep in deps:
                cleanup.open_cleanup(self, account, dep, "expired", t.episode)
            self.notify(
                account,
                f"lifecycle:{account.id}:expired:{t.episode}",
                "expired",
                f"{account.name}: grace period ended, deployments are being deleted",
                notices.expiry_body(self._expiry_lines(account, deps, t.grace_deadline)),
                {"episode": t.episode, "grace_deadline": t.grace_deadline, "deployments": dep_ids},
            )
        elif t.from_state == State.EXPIRED:
            cleanup.cancel_retained_volumes(self, account)
            self.notify(
                account,
                f"lifecycle:{account.id}:reactivated:{t.seq}",
                "reactivated",
                f"{account.name}: account active again",
                notices.reactivated_body(t.balance),
                {"episode": t.episode},
            )

    def _set_domains(self, account: Account, dep_ids: list[str], old: str, new: str, t: Transition) -> None:
        if self.dry_run:
            hosts = [h for hs in store.domains_of(self.conn, dep_ids).values() for h, s in hs if s == old]
        else:
            hosts = store.move_domains(self.conn, dep_ids, old, new)
        if hosts:
            self.event(
                key=f"{account.id}:transition:{t.seq}:domains_{new}",
                account_id=account.id,
                kind="domains",
                action=f"domains_{new}",
                outcome="done",
                target={"hostnames": sorted(hosts)},
                detail={"from": old, "to": new},
            )

    def _expiry_lines(self, account: Account, deps: list[Deployment], deadline: datetime | None) -> list[str]:
        lines = [notices.deployment_expiry_line(d, deadline) for d in deps]
        snapshot_class = self.cluster.snapshot_class if self.cluster is not None else None
        for v in store.known_volumes(self.conn, [d.id for d in deps]):
            lines.append(notices.volume_fate_line(account, v.name, v.size_bytes, deadline, snapshot_class))
        return lines


# The transitions an expiry can cause: changes for the worse, into low balance or grace.
_WORSE = {
    State.LOW_BALANCE: (State.HEALTHY,),
    State.GRACE_PERIOD: (State.HEALTHY, State.LOW_BALANCE),
}


def _for_the_worse(t: Transition) -> bool:
    return t.from_state in _WORSE.get(t.to_state, ())


def run_lifecycle(
    conn: psycopg.Connection,
    cluster: Cluster | None,
    now: datetime,
    *,
    dry_run: bool = False,
    account_ids: Iterable[str] | None = None,
    connect_cluster: Callable[[], Cluster | None] | None = None,
) -> RunReport:
    """Evaluate every account (or ``account_ids``) at ``now``; see the module docstring.

    ``connect_cluster`` (when ``cluster`` is None) builds the cluster when an account first needs
    it; it returns None when no cluster is configured."""
    return Lifecycle(conn, cluster, now, dry_run=dry_run, connect_cluster=connect_cluster).run(account_ids)
