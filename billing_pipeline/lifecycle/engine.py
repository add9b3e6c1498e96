"""The lifecycle acting on the cluster: one evaluation of every account at a given ``now``.

For each account, in order:

1. **Decide** (one transaction, the account's lifecycle row locked): the pure machine
   (``machine.step``) moves the state; each transition is recorded once (its key is the account's
   transition number) together with its database effects and its notice: entering grace suspends
   the domains and queues the notice with the deadline and what will be deleted; recovering
   re-activates the domains; expiry opens a cleanup for each live deployment.
2. **Reconcile the cluster** to the state: routing restored (outside grace) or removed (in
   grace, rules saved exactly first), idle deployments cleaned early (``early_idle_deletion``),
   pending cleanups carried out.

Every cluster write is recorded in ``lifecycle_events`` after it succeeds (404 counts as done:
``already_absent``) under a unique key, so a re-run records nothing twice; a failed call (403,
5xx) is recorded as ``failed``, leaves its step pending and stops that account with the error.
Progress lives in the database, so a run killed at any point completes on the next one.

Dry-run computes the same decisions and plans, records each as a ``dry_run`` event
(``would_do``) and changes nothing: no state, no domains, no notices, no cluster writes.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Iterable

import psycopg

from billing_pipeline.alerts.outbox import enqueue_notification
from billing_pipeline.errors import BillingError
from billing_pipeline.lifecycle import store
from billing_pipeline.lifecycle.cluster import (
    ACCOUNT_ID_LABEL,
    DEPLOYMENT_ID_LABEL,
    KINDS,
    WORKLOAD_KINDS,
    Cluster,
    ClusterCallError,
    ProtectedNamespaceError,
    labels_of,
)
from billing_pipeline.lifecycle.machine import Inputs, Snapshot, State, Transition, step
from billing_pipeline.lifecycle.store import Account, Deployment, fmt_size, fmt_time

log = logging.getLogger(__name__)

# "Idle" for early deletion: over the 24 complete hours before now, every hour ingested complete,
# the deployment existed the whole window, used under IDLE_CPU_CORE_HOURS of CPU in total and sent
# under IDLE_EGRESS_GIB of network egress in total.
IDLE_WINDOW_HOURS = 24
IDLE_CPU_CORE_HOURS = Decimal("0.01")
IDLE_EGRESS_GIB = Decimal("0.001")


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


@dataclass(frozen=True)
class PlannedObject:
    kind: str
    namespace: str
    name: str
    found_by: str  # "label" | "legacy_name"
    uid: str | None
    size_bytes: Decimal | None = None


# --------------------------------------------------------------------------- discovery


def _quantity_bytes(q: str | None) -> Decimal | None:
    if not q:
        return None
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50,
             "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    for suffix in sorted(units, key=len, reverse=True):
        if q.endswith(suffix):
            return Decimal(q[: -len(suffix)]) * units[suffix]
    return Decimal(q)


def discover(cluster: Cluster, account_id: str, dep: Deployment, *, legacy_by_name: bool,
             kinds: Iterable[str] = KINDS) -> list[PlannedObject]:
    """The objects that belong to ``dep`` in its namespace: labelled with its id, or (legacy)
    named like it and carrying no deployment label. Objects labelled for another account are
    never included."""
    found: dict[tuple[str, str], PlannedObject] = {}
    for kind in kinds:
        for obj in cluster.list(kind, dep.namespace, f"{DEPLOYMENT_ID_LABEL}={dep.id}"):
            labels = labels_of(obj)
            if labels.get(ACCOUNT_ID_LABEL, account_id) != account_id:
                continue
            found[(kind, obj["metadata"]["name"])] = _planned(kind, obj, "label")
        if legacy_by_name and (kind, dep.name) not in found:
            obj = cluster.get(kind, dep.namespace, dep.name)
            if obj is not None:
                labels = labels_of(obj)
                if DEPLOYMENT_ID_LABEL not in labels and labels.get(ACCOUNT_ID_LABEL, account_id) == account_id:
                    found[(kind, dep.name)] = _planned(kind, obj, "legacy_name")
    return list(found.values())


def _planned(kind: str, obj: dict, found_by: str) -> PlannedObject:
    meta = obj.get("metadata") or {}
    size = None
    if kind == "PersistentVolumeClaim":
        size = _quantity_bytes((((obj.get("spec") or {}).get("resources") or {}).get("requests") or {}).get("storage"))
    return PlannedObject(kind, meta.get("namespace"), meta["name"], found_by, meta.get("uid"), size)


def _target(kind: str, ns: str, name: str, **extra) -> dict:
    return {"kind": kind, "namespace": ns, "name": name, **extra}


# --------------------------------------------------------------------------- the engine


class Lifecycle:
    """Evaluates accounts at ``now`` against the database (``conn``, autocommit) and ``cluster``."""

    def __init__(self, conn: psycopg.Connection, cluster: Cluster | None, now: datetime, *, dry_run: bool = False):
        if now.tzinfo is None:
            raise BillingError(f"lifecycle clock {now.isoformat()} has no timezone; give it in UTC, e.g. 2026-11-25T14:00:00Z.")
        if not conn.autocommit:
            raise BillingError("the lifecycle needs an autocommit connection (it commits each step itself).")
        self.conn = conn
        self.cluster = cluster
        self.now = now.astimezone(timezone.utc)
        self.dry_run = dry_run

    def _need_cluster(self) -> Cluster:
        if self.cluster is None:
            raise BillingError("this account needs Kubernetes actions (routing or cleanup) but no cluster is configured: "
                               "set KUBECONFIG to a kubeconfig file (or run inside the cluster), then re-run grace_period_job.")
        return self.cluster

    # ---- events
    def _event(self, **kw) -> bool:
        if self.dry_run:
            kw = {**kw, "key": f"dry-run@{self.now.isoformat()}:{kw['key']}", "kind": "dry_run",
                  "outcome": "would_do", "detail": {**(kw.get("detail") or {}), "would": kw["kind"]}}
        return store.record_event(self.conn, decided_at=self.now, **kw)

    # ---- entry point
    def run(self, account_ids: Iterable[str] | None = None) -> RunReport:
        report = RunReport(self.now, self.dry_run)
        if account_ids is None:
            account_ids = [r[0] for r in self.conn.execute("SELECT id FROM billing.accounts ORDER BY id").fetchall()]
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
        if state in (State.HEALTHY, State.LOW_BALANCE):
            self._restore_routing(account, outcome)
        if state == State.GRACE_PERIOD:
            self._disable_routing(account, outcome)
            if account.early_idle_deletion:
                self._early_idle_deletion(account, outcome)
        self._run_cleanups(account, outcome)
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
            decision = step(snap, Inputs(account.balance, account.low_balance_threshold,
                                         account.grace_period_hours), self.now)
            for t in decision.transitions:
                self._event(key=f"{account_id}:transition:{t.seq}", account_id=account_id, kind="transition",
                            action="transition", from_state=t.from_state.value, to_state=t.to_state.value,
                            outcome="done", detail={"seq": t.seq, "balance": t.balance, "reason": t.reason,
                                                    "grace_deadline": t.grace_deadline, "episode": t.episode})
                self._on_transition(account, t)
            outcome.transitions.extend(decision.transitions)
            if not self.dry_run:
                store.save_snapshot(self.conn, account_id, decision.snapshot, account.balance, self.now)
            return decision.snapshot.state

    def _on_transition(self, account: Account, t: Transition) -> None:
        deps = store.live_deployments(self.conn, account.id)
        dep_ids = [d.id for d in deps]
        if t.to_state == State.GRACE_PERIOD:
            self._set_domains(account, dep_ids, "active", "suspended", t)
            self._notify_grace(account, deps, t)
        elif t.from_state == State.GRACE_PERIOD and t.to_state != State.EXPIRED:
            self._set_domains(account, dep_ids, "suspended", "active", t)
            self._notify(account, f"lifecycle:{account.id}:recovered:{t.episode}", "recovered",
                         f"{account.name}: service restored",
                         f"Your balance is above zero again ({t.balance} credits). The grace period that would "
                         f"have ended on {fmt_time(t.grace_deadline)} is over: routing is being restored exactly "
                         "as it was and your domains are active again.", {"episode": t.episode})
        elif t.to_state == State.EXPIRED:
            for dep in deps:
                self._open_cleanup(account, dep, "expired", t.episode)
            self._notify(account, f"lifecycle:{account.id}:expired:{t.episode}", "expired",
                         f"{account.name}: grace period ended, deployments are being deleted",
                         _expiry_body(account, self._expiry_lines(account, deps, t.grace_deadline)),
                         {"episode": t.episode, "grace_deadline": t.grace_deadline,
                          "deployments": dep_ids})
        elif t.from_state == State.EXPIRED:
            self._cancel_retained_volumes(account, t)
            self._notify(account, f"lifecycle:{account.id}:reactivated:{t.seq}", "reactivated", f"{account.name}: account active again",
                         f"Your balance is above zero again ({t.balance} credits). Deployments deleted at expiry "
                         "are not restored; volumes still kept under your retention policy are no longer "
                         "scheduled for deletion.", {"episode": t.episode})

    def _notify(self, account: Account, dedupe_key: str, kind: str, subject: str, body: str, payload: dict) -> None:
        if self.dry_run:
            self._event(key=f"notice:{dedupe_key}", account_id=account.id, kind="notice", action=kind,
                        outcome="done", detail={"subject": subject})
            return
        queued = enqueue_notification(self.conn, account_id=account.id, kind=f"lifecycle_{kind}",
                                      dedupe_key=dedupe_key, subject=subject, body=body,
                                      payload={**payload, "account_id": account.id})
        if queued:
            self._event(key=f"notice:{dedupe_key}", account_id=account.id, kind="notice", action=kind,
                        outcome="done", detail={"subject": subject, "dedupe_key": dedupe_key})

    def _set_domains(self, account: Account, dep_ids: list[str], old: str, new: str, t: Transition) -> None:
        if self.dry_run:
            hosts = [h for hs in store.domains_of(self.conn, dep_ids).values() for h, s in hs if s == old]
        else:
            hosts = [r[0] for r in self.conn.execute(
                "UPDATE billing.domains SET status = %s WHERE deployment_id = ANY(%s) AND status = %s "
                "RETURNING hostname", (new, dep_ids, old)).fetchall()]
        if hosts:
            self._event(key=f"{account.id}:transition:{t.seq}:domains_{new}", account_id=account.id,
                        kind="domains", action=f"domains_{new}", outcome="done",
                        target={"hostnames": sorted(hosts)}, detail={"from": old, "to": new})

    def _expiry_lines(self, account: Account, deps: list[Deployment], deadline: datetime | None) -> list[str]:
        volumes = store.known_volumes(self.conn, [d.id for d in deps])
        lines = [f"Deployment {d.name} (namespace {d.namespace}) with its Services, Ingresses, ConfigMaps and "
                 f"Secrets will be deleted on {fmt_time(deadline)}." for d in deps]
        for v in volumes:
            lines.append(volume_fate_line(account, v.name, v.size_bytes, deadline))
        return lines

    def _notify_grace(self, account: Account, deps: list[Deployment], t: Transition) -> None:
        lines = self._expiry_lines(account, deps, t.grace_deadline)
        body = (
            f"Your balance is {t.balance} credits. Routing to your deployments is disabled and your domains are "
            f"suspended; your workloads keep running. Add credits before {fmt_time(t.grace_deadline)} "
            "to restore everything exactly as it was. Otherwise, at that time:\n"
            + "\n".join(f"- {line}" for line in lines or ["(no deployments)"])
        )
        if account.early_idle_deletion:
            body += ("\nEarly idle deletion is enabled: a deployment idle over the last 24 hours "
                     "(under 0.01 core-hours of CPU and no network egress) may be deleted before the deadline.")
        self._notify(account, f"lifecycle:{account.id}:grace:{t.episode}", "grace_period",
                     f"{account.name}: credits used up, deletion on {fmt_time(t.grace_deadline)}", body,
                     {"episode": t.episode, "grace_deadline": t.grace_deadline, "balance": t.balance,
                      "will_happen": lines})

    def _open_cleanup(self, account: Account, dep: Deployment, reason: str, episode: int) -> None:
        delete_after = self.now + (timedelta(days=account.volume_retention_days)
                                   if account.volume_policy == "retain" else timedelta(0))
        if not self.dry_run:
            self.conn.execute(
                "INSERT INTO billing.lifecycle_cleanups (deployment_id, account_id, namespace, name, reason, episode, "
                "volume_policy, volumes_delete_after, started_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (deployment_id) DO NOTHING",
                (dep.id, account.id, dep.namespace, dep.name, reason, episode, account.volume_policy,
                 delete_after, self.now))
        self._event(key=f"cleanup:{dep.id}:opened", account_id=account.id, deployment_id=dep.id, kind="cleanup",
                    action="cleanup_opened", outcome="done",
                    target={"namespace": dep.namespace, "deployment": dep.name},
                    detail={"reason": reason, "volume_policy": account.volume_policy,
                            "volumes_delete_after": delete_after})

    def _cancel_retained_volumes(self, account: Account, t: Transition) -> None:
        if self.dry_run:
            return
        rows = self.conn.execute(
            "UPDATE billing.lifecycle_cleanups SET cancelled_at = %s, cancel_reason = %s "
            "WHERE account_id = %s AND volumes_done_at IS NULL AND cancelled_at IS NULL "
            "AND workload_done_at IS NOT NULL AND volumes_delete_after > %s RETURNING deployment_id",
            (self.now, "account re-activated during volume retention", account.id, self.now)).fetchall()
        for (dep_id,) in rows:
            self._event(key=f"cleanup:{dep_id}:volumes_kept", account_id=account.id, deployment_id=dep_id,
                        kind="cleanup", action="retained_volumes_kept", outcome="done",
                        detail={"reason": "account re-activated before the retention period ended"})

    # ---- 2. routing
    def _ingresses(self, account_id: str, dep: Deployment) -> list[dict]:
        cluster = self._need_cluster()
        items = {o["metadata"]["name"]: o for o in cluster.list("Ingress", dep.namespace, f"{DEPLOYMENT_ID_LABEL}={dep.id}")
                 if labels_of(o).get(ACCOUNT_ID_LABEL, account_id) == account_id}
        if dep.name not in items:
            legacy = cluster.get("Ingress", dep.namespace, dep.name)
            if legacy is not None and DEPLOYMENT_ID_LABEL not in labels_of(legacy) \
                    and labels_of(legacy).get(ACCOUNT_ID_LABEL, account_id) == account_id:
                items[dep.name] = legacy
        return list(items.values())

    def _disable_routing(self, account: Account, outcome: AccountOutcome) -> None:
        snap = store.lock_snapshot(self.conn, account.id, self.now, lock=False)
        episode = snap.episode if snap else 1
        for dep in store.live_deployments(self.conn, account.id):
            self._need_cluster().guard(dep.namespace)
            for ing in self._ingresses(account.id, dep):
                name, spec = ing["metadata"]["name"], ing.get("spec") or {}
                if self.dry_run:
                    if spec.get("rules") or spec.get("defaultBackend"):
                        self._event(key=f"{account.id}:{episode}:disable_routing:{dep.namespace}/{name}",
                                    account_id=account.id, deployment_id=dep.id, kind="cluster_call",
                                    action="remove_ingress_rules", outcome="done",
                                    target=_target("Ingress", dep.namespace, name), detail={"rules": spec.get("rules")})
                    continue
                # Save first, in its own commit: once rules are removed, only this row remembers them.
                # A row not yet restored is never overwritten (it holds the originals).
                self.conn.execute(
                    "INSERT INTO billing.lifecycle_saved_ingresses (namespace, name, account_id, deployment_id, episode, "
                    "has_rules, rules, has_default_backend, default_backend, status, saved_at) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 'saved', %s) "
                    "ON CONFLICT (namespace, name) DO UPDATE SET account_id = excluded.account_id, "
                    "deployment_id = excluded.deployment_id, episode = excluded.episode, has_rules = excluded.has_rules, "
                    "rules = excluded.rules, has_default_backend = excluded.has_default_backend, "
                    "default_backend = excluded.default_backend, status = 'saved', saved_at = excluded.saved_at, "
                    "disabled_at = NULL, restored_at = NULL "
                    "WHERE lifecycle_saved_ingresses.status IN ('restored', 'gone')",
                    (dep.namespace, name, account.id, dep.id, episode, "rules" in spec,
                     json.dumps(spec.get("rules")), "defaultBackend" in spec,
                     json.dumps(spec.get("defaultBackend")), self.now))
                ops = [{"op": "remove", "path": f"/spec/{k}"} for k in ("rules", "defaultBackend") if k in spec]
                if ops:
                    try:
                        result = self._need_cluster().json_patch("Ingress", dep.namespace, name, ops)
                    except ClusterCallError as exc:
                        self._failed(account, dep.id, f"disable_routing:{dep.namespace}/{name}", "remove_ingress_rules",
                                     _target("Ingress", dep.namespace, name), exc)
                        raise
                    call_outcome = result.outcome
                else:
                    call_outcome = "done"  # already without rules (a previous run removed them)
                with self.conn.transaction():
                    self.conn.execute(
                        "UPDATE billing.lifecycle_saved_ingresses SET status = 'disabled', disabled_at = coalesce(disabled_at, %s) "
                        "WHERE namespace = %s AND name = %s AND status = 'saved'", (self.now, dep.namespace, name))
                    if self._event(key=f"{account.id}:{episode}:disable_routing:{dep.namespace}/{name}",
                                   account_id=account.id, deployment_id=dep.id, kind="cluster_call",
                                   action="remove_ingress_rules", outcome=call_outcome,
                                   target=_target("Ingress", dep.namespace, name, uid=ing["metadata"].get("uid")),
                                   detail={"removed": [o["path"] for o in ops]}):
                        outcome.actions.append(f"removed rules of Ingress {dep.namespace}/{name}")

    def _restore_routing(self, account: Account, outcome: AccountOutcome) -> None:
        rows = self.conn.execute(
            "SELECT namespace, name, deployment_id, episode, has_rules, rules, has_default_backend, default_backend "
            "FROM billing.lifecycle_saved_ingresses WHERE account_id = %s AND status IN ('saved', 'disabled') "
            "ORDER BY namespace, name", (account.id,)).fetchall()
        for ns, name, dep_id, episode, has_rules, rules, has_backend, backend in rows:
            key = f"{account.id}:{episode}:restore_routing:{ns}/{name}"
            ops = []
            if has_rules:
                ops.append({"op": "add", "path": "/spec/rules", "value": rules})
            if has_backend:
                ops.append({"op": "add", "path": "/spec/defaultBackend", "value": backend})
            if self.dry_run:
                self._event(key=key, account_id=account.id, deployment_id=dep_id, kind="cluster_call",
                            action="restore_ingress_rules", outcome="done", target=_target("Ingress", ns, name))
                continue
            if ops:
                try:
                    result = self._need_cluster().json_patch("Ingress", ns, name, ops)
                except ClusterCallError as exc:
                    self._failed(account, dep_id, f"restore_routing:{ns}/{name}", "restore_ingress_rules",
                                 _target("Ingress", ns, name), exc)
                    raise
                call_outcome = result.outcome
            else:
                call_outcome = "done"
            with self.conn.transaction():
                self.conn.execute(
                    "UPDATE billing.lifecycle_saved_ingresses SET status = %s, restored_at = %s "
                    "WHERE namespace = %s AND name = %s",
                    ("gone" if call_outcome == "already_absent" else "restored", self.now, ns, name))
                if self._event(key=key, account_id=account.id, deployment_id=dep_id, kind="cluster_call",
                               action="restore_ingress_rules", outcome=call_outcome, target=_target("Ingress", ns, name),
                               detail={"restored": [o["path"] for o in ops]}):
                    outcome.actions.append(f"restored rules of Ingress {ns}/{name}")

    def _failed(self, account: Account, dep_id: str | None, step_key: str, action: str, target: dict,
                exc: ClusterCallError) -> None:
        if self.dry_run:
            return
        n = self.conn.execute("SELECT count(*) FROM billing.lifecycle_events WHERE event_key LIKE %s",
                              (f"{account.id}:failed:{step_key}:%",)).fetchone()[0]
        store.record_event(self.conn, key=f"{account.id}:failed:{step_key}:{n + 1}", account_id=account.id,
                           deployment_id=dep_id, kind="cluster_call", action=action, outcome="failed",
                           target=target, detail={"error": str(exc), "http_status": exc.status},
                           decided_at=self.now)

    # ---- early idle deletion
    def idle_deployments(self, account: Account) -> list[tuple[Deployment, dict]]:
        end = self.now.replace(minute=0, second=0, microsecond=0)
        start = end - timedelta(hours=IDLE_WINDOW_HOURS)
        complete = self.conn.execute(
            "SELECT count(*) FROM billing.metric_hours WHERE hour >= %s AND hour < %s AND complete",
            (start, end)).fetchone()[0]
        if complete < IDLE_WINDOW_HOURS:
            return []  # without complete metrics we cannot know a deployment is idle
        rows = self.conn.execute(
            """
            SELECT d.id, d.account_id, d.namespace, d.name,
                   coalesce((SELECT sum(cpu_usage_core_hours) FROM billing.metric_container_hours m
                             WHERE m.deployment_id = d.id AND m.hour >= %(s)s AND m.hour < %(e)s), 0),
                   coalesce((SELECT sum(egress_gib) FROM billing.metric_pod_network_hours n
                             WHERE n.deployment_id = d.id AND n.hour >= %(s)s AND n.hour < %(e)s), 0)
            FROM billing.deployments d
            WHERE d.account_id = %(a)s AND d.deleted_at IS NULL AND d.created_at <= %(s)s
              AND NOT EXISTS (SELECT 1 FROM billing.lifecycle_cleanups c WHERE c.deployment_id = d.id)
            ORDER BY d.id
            """, {"s": start, "e": end, "a": account.id}).fetchall()
        return [(Deployment(*r[:4]), {"window": [start, end], "cpu_core_hours": r[4], "egress_gib": r[5]})
                for r in rows if r[4] < IDLE_CPU_CORE_HOURS and r[5] < IDLE_EGRESS_GIB]

    def _early_idle_deletion(self, account: Account, outcome: AccountOutcome) -> None:
        snap = store.lock_snapshot(self.conn, account.id, self.now, lock=False)
        episode = snap.episode if snap else 1
        for dep, evidence in self.idle_deployments(account):
            reason = (f"idle over the last {IDLE_WINDOW_HOURS} hours ({fmt_time(evidence['window'][0])} to "
                      f"{fmt_time(evidence['window'][1])}): {evidence['cpu_core_hours']} core-hours of CPU "
                      f"(under {IDLE_CPU_CORE_HOURS}) and {evidence['egress_gib']} GiB of egress (under {IDLE_EGRESS_GIB})")
            with self.conn.transaction():
                self._open_cleanup(account, dep, "idle", episode)
                self._event(key=f"cleanup:{dep.id}:idle_reason", account_id=account.id, deployment_id=dep.id,
                            kind="cleanup", action="early_idle_deletion", outcome="done",
                            target={"namespace": dep.namespace, "deployment": dep.name},
                            detail={"reason": reason, **evidence})
                self._notify(account, f"lifecycle:{account.id}:idle:{dep.id}", "idle_deletion",
                             f"{account.name}: idle deployment {dep.name} deleted early",
                             f"Your account is in its grace period and early idle deletion is enabled. Deployment "
                             f"{dep.name} (namespace {dep.namespace}) was {reason}; it is being deleted now with its "
                             "Services, Ingresses, ConfigMaps and Secrets. "
                             + _volume_policy_sentence(account), {"deployment_id": dep.id, "reason": reason})
            outcome.actions.append(f"early deletion of idle deployment {dep.namespace}/{dep.name}")

    # ---- 3. cleanup
    def _run_cleanups(self, account: Account, outcome: AccountOutcome) -> None:
        rows = self.conn.execute(
            "SELECT c.deployment_id, c.namespace, c.name, c.volumes_delete_after, c.workload_done_at, d.account_id, "
            "d.namespace FROM billing.lifecycle_cleanups c JOIN billing.deployments d ON d.id = c.deployment_id "
            "WHERE c.account_id = %s AND c.volumes_done_at IS NULL AND c.cancelled_at IS NULL "
            "ORDER BY c.started_at, c.deployment_id", (account.id,)).fetchall()
        if self.dry_run:
            # What an expiry decided in this evaluation would open, for the record.
            if outcome.transitions and outcome.transitions[-1].to_state == State.EXPIRED:
                rows = [(d.id, d.namespace, d.name, self.now, None, account.id, d.namespace)
                        for d in store.live_deployments(self.conn, account.id)]
        namespaces = store.account_namespaces(self.conn, account.id)
        shared = store.shared_namespaces(self.conn, account.id)
        for dep_id, ns, name, delete_after, workload_done, owner, dep_ns in rows:
            dep = Deployment(dep_id, account.id, ns, name)
            if owner != account.id or ns != dep_ns or ns not in namespaces:
                self._refuse(account, dep, f"namespace {ns!r} is not the namespace of deployment {dep_id} of account {account.id}")
            try:
                self._need_cluster().guard(ns)
            except ProtectedNamespaceError as exc:
                self._refuse(account, dep, str(exc))
            self._cleanup_one(account, dep, delete_after, workload_done, legacy=ns not in shared, outcome=outcome)

    def _refuse(self, account: Account, dep: Deployment, why: str) -> None:
        self._event(key=f"guard:{dep.id}:{dep.namespace}", account_id=account.id, deployment_id=dep.id, kind="guard",
                    action="refuse_cleanup", outcome="refused", target={"namespace": dep.namespace}, detail={"why": why})
        raise ProtectedNamespaceError(f"cleanup of deployment {dep.id} ({account.id}) refused: {why}.")

    def _cleanup_one(self, account: Account, dep: Deployment, delete_after: datetime, workload_done: datetime | None,
                     *, legacy: bool, outcome: AccountOutcome) -> None:
        cluster = self._need_cluster()
        volumes_due = self.now >= delete_after
        kinds = [k for k in KINDS if (workload_done is None and k in WORKLOAD_KINDS)
                 or (k == "PersistentVolumeClaim")]
        found = discover(cluster, account.id, dep, legacy_by_name=legacy, kinds=kinds)
        if self.dry_run:
            for obj in found:
                if obj.kind != "PersistentVolumeClaim" or volumes_due:
                    self._event(key=f"cleanup:{dep.id}:delete:{obj.kind}:{obj.namespace}/{obj.name}",
                                account_id=account.id, deployment_id=dep.id, kind="cluster_call", action="delete",
                                outcome="done", target=_target(obj.kind, obj.namespace, obj.name, found_by=obj.found_by))
            return
        with self.conn.transaction():
            for obj in found:
                inserted = self.conn.execute(
                    "INSERT INTO billing.lifecycle_cleanup_objects (deployment_id, kind, namespace, name, found_by, uid, "
                    "size_bytes, planned_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
                    (dep.id, obj.kind, obj.namespace, obj.name, obj.found_by, obj.uid, obj.size_bytes, self.now)).fetchone()
                if inserted:
                    self._event(key=f"cleanup:{dep.id}:plan:{obj.kind}:{obj.namespace}/{obj.name}", account_id=account.id,
                                deployment_id=dep.id, kind="cleanup", action="planned_delete", outcome="done",
                                target=_target(obj.kind, obj.namespace, obj.name, uid=obj.uid, found_by=obj.found_by,
                                               size_bytes=obj.size_bytes))
        if workload_done is None:
            self._delete_pending(account, dep, WORKLOAD_KINDS, outcome)
            with self.conn.transaction():
                self.conn.execute("UPDATE billing.lifecycle_cleanups SET workload_done_at = %s "
                                  "WHERE deployment_id = %s AND workload_done_at IS NULL", (self.now, dep.id))
                hosts = [r[0] for r in self.conn.execute(
                    "UPDATE billing.domains SET status = 'released' WHERE deployment_id = %s AND status <> 'released' "
                    "RETURNING hostname", (dep.id,)).fetchall()]
                self.conn.execute("UPDATE billing.lifecycle_cleanups SET domains_released_at = %s "
                                  "WHERE deployment_id = %s AND domains_released_at IS NULL", (self.now, dep.id))
                self._event(key=f"cleanup:{dep.id}:workload_deleted", account_id=account.id, deployment_id=dep.id,
                            kind="cleanup", action="workload_deleted", outcome="done",
                            target={"namespace": dep.namespace, "deployment": dep.name})
                if hosts:
                    self._event(key=f"cleanup:{dep.id}:domains_released", account_id=account.id, deployment_id=dep.id,
                                kind="domains", action="domains_released", outcome="done",
                                target={"hostnames": sorted(hosts)})
            outcome.actions.append(f"deleted workload of {dep.namespace}/{dep.name}")
        if volumes_due:
            self._delete_pending(account, dep, ("PersistentVolumeClaim",), outcome)
            with self.conn.transaction():
                self.conn.execute("UPDATE billing.lifecycle_cleanups SET volumes_done_at = %s "
                                  "WHERE deployment_id = %s AND volumes_done_at IS NULL", (self.now, dep.id))
                self._event(key=f"cleanup:{dep.id}:volumes_deleted", account_id=account.id, deployment_id=dep.id,
                            kind="cleanup", action="volumes_deleted", outcome="done",
                            target={"namespace": dep.namespace, "deployment": dep.name})

    def _delete_pending(self, account: Account, dep: Deployment, kinds: Iterable[str], outcome: AccountOutcome) -> None:
        order = {k: i for i, k in enumerate(KINDS)}
        pending = self.conn.execute(
            "SELECT kind, namespace, name, found_by, uid, attempts FROM billing.lifecycle_cleanup_objects "
            "WHERE deployment_id = %s AND status = 'pending' AND kind = ANY(%s)", (dep.id, list(kinds))).fetchall()
        pending.sort(key=lambda r: (order[r[0]], r[1], r[2]))
        cluster = self._need_cluster()
        for kind, ns, name, found_by, uid, attempts in pending:
            if ns != dep.namespace:
                self._refuse(account, dep, f"{kind} {ns}/{name} is outside the deployment's namespace {dep.namespace}")
            target = _target(kind, ns, name, uid=uid, found_by=found_by)
            try:
                result = cluster.delete(kind, ns, name)
            except ClusterCallError as exc:
                with self.conn.transaction():
                    self.conn.execute(
                        "UPDATE billing.lifecycle_cleanup_objects SET attempts = attempts + 1, last_error = %s "
                        "WHERE deployment_id = %s AND kind = %s AND namespace = %s AND name = %s",
                        (str(exc), dep.id, kind, ns, name))
                    self._failed(account, dep.id, f"delete:{kind}:{ns}/{name}", "delete", target, exc)
                raise ClusterCallError(
                    f"cleanup of deployment {dep.id} ({dep.namespace}/{dep.name}) of account {account.id} stopped: {exc}",
                    status=exc.status) from None
            with self.conn.transaction():
                self.conn.execute(
                    "UPDATE billing.lifecycle_cleanup_objects SET status = %s, done_at = %s, attempts = attempts + 1, "
                    "last_error = NULL WHERE deployment_id = %s AND kind = %s AND namespace = %s AND name = %s",
                    ("deleted" if result.outcome == "done" else "already_absent", self.now, dep.id, kind, ns, name))
                if self._event(key=f"cleanup:{dep.id}:delete:{kind}:{ns}/{name}", account_id=account.id,
                               deployment_id=dep.id, kind="cluster_call", action="delete", outcome=result.outcome,
                               target=target):
                    outcome.actions.append(f"deleted {kind} {ns}/{name}" if result.outcome == "done"
                                           else f"{kind} {ns}/{name} already absent")


# --------------------------------------------------------------------------- wording


def _volume_policy_sentence(account: Account) -> str:
    if account.volume_policy == "retain":
        return (f"Its PersistentVolumeClaims are kept for {account.volume_retention_days} days under your retain "
                "policy, then deleted with their data.")
    return "Its PersistentVolumeClaims are deleted with their data (volume policy: delete)."


def volume_fate_line(account: Account, pvc: str, size_bytes, at: datetime | None) -> str:
    size = fmt_size(size_bytes)
    if at is None:
        if account.volume_policy == "retain":
            return (f"PVC {pvc} ({size}) would be kept {account.volume_retention_days} days after an expiry, "
                    "then deleted with its data.")
        return f"PVC {pvc} ({size}) would be deleted with its data at an expiry."
    if account.volume_policy == "retain":
        return (f"PVC {pvc} ({size}) will be kept after expiry until "
                f"{fmt_time(at + timedelta(days=account.volume_retention_days))}, then deleted with its data.")
    return f"PVC {pvc} ({size}) will be deleted with its data on {fmt_time(at)}."


def _expiry_body(account: Account, lines: list[str]) -> str:
    return ("The grace period ended with your balance at or below zero. The following is being deleted now:\n"
            + "\n".join(f"- {line}" for line in lines or ["(no deployments)"]))


def run_lifecycle(conn: psycopg.Connection, cluster: Cluster | None, now: datetime, *, dry_run: bool = False,
                  account_ids: Iterable[str] | None = None) -> RunReport:
    """Evaluate every account (or ``account_ids``) at ``now``; see the module docstring."""
    return Lifecycle(conn, cluster, now, dry_run=dry_run).run(account_ids)
