"""The one cleanup path: a deployment's objects deleted, its domains released, its volumes
handled under the policy in force (docs/rules/lifecycle.md).

A cleanup is opened at expiry (or early, for an idle deployment) and carried out by every run
until done. Its plan (the objects found by label, or legacy by name) is recorded before the
first delete; each delete is recorded when the API server confirmed it (404: already absent),
so a run killed anywhere finishes on the next one, deleting and recording nothing twice.
Order: Ingress, Deployment, Service, ConfigMap, Secret; then the PVCs: at once under ``delete``,
after ``volume_retention_days`` under ``retain``, each after its snapshot is ready under
``snapshot`` (``snapshots``). Nothing outside the account's own namespaces and labels.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from billing_pipeline.lifecycle import snapshots, store
from billing_pipeline.lifecycle.actions import tracked
from billing_pipeline.lifecycle.discovery import discover, target
from billing_pipeline.lifecycle.machine import State
from billing_pipeline.lifecycle.store import Account, Deployment, fmt_time
from billing_pipeline.lifecycle.volumes import handling, retained_policies, volumes_delete_after
from billing_pipeline.resources.cluster import KINDS, WORKLOAD_KINDS, ClusterCallError, ProtectedNamespaceError

PVC = "PersistentVolumeClaim"


def open_cleanup(lc, account: Account, dep: Deployment, reason: str, episode: int) -> None:
    delete_after = volumes_delete_after(account, lc.now)
    if not lc.dry_run:
        store.open_cleanup(
            lc.conn,
            deployment_id=dep.id,
            account_id=account.id,
            namespace=dep.namespace,
            name=dep.name,
            reason=reason,
            episode=episode,
            volume_policy=account.volume_policy,
            volumes_delete_after=delete_after,
            now=lc.now,
        )
    lc.event(
        key=f"cleanup:{dep.id}:opened",
        account_id=account.id,
        deployment_id=dep.id,
        kind="cleanup",
        action="cleanup_opened",
        outcome="done",
        target={"namespace": dep.namespace, "deployment": dep.name},
        detail={"reason": reason, "volume_policy": account.volume_policy, "volumes_delete_after": delete_after},
    )


def cancel_retained_volumes(lc, account: Account) -> None:
    if lc.dry_run:
        return
    for dep_id in store.cancel_retained_volumes(
        lc.conn, account.id, lc.now, "account re-activated during volume retention", retained_policies()
    ):
        lc.event(
            key=f"cleanup:{dep_id}:volumes_kept",
            account_id=account.id,
            deployment_id=dep_id,
            kind="cleanup",
            action="retained_volumes_kept",
            outcome="done",
            detail={"reason": "account re-activated before the retention period ended"},
        )


def run_cleanups(lc, account: Account, outcome) -> None:
    rows = store.open_cleanups(lc.conn, account.id)
    if lc.dry_run and outcome.transitions and outcome.transitions[-1].to_state == State.EXPIRED:
        # What an expiry decided in this evaluation would open, for the record.
        rows = [
            (
                d.id,
                d.namespace,
                d.name,
                volumes_delete_after(account, lc.now),
                None,
                account.id,
                d.namespace,
                account.volume_policy,
            )
            for d in store.live_deployments(lc.conn, account.id)
        ]
    namespaces = store.account_namespaces(lc.conn, account.id)
    shared = store.shared_namespaces(lc.conn, account.id)
    for dep_id, ns, name, delete_after, workload_done, owner, dep_ns, policy in rows:
        dep = Deployment(dep_id, account.id, ns, name)
        with tracked(
            lc, account.id, f"cleanup:{dep_id}", "cleanup", dep_id, {"namespace": ns, "deployment": name}
        ) as h:
            if owner != account.id or ns != dep_ns or ns not in namespaces:
                refuse(
                    lc,
                    account,
                    dep,
                    f"namespace {ns!r} is not the namespace of deployment {dep_id} of account {account.id}",
                )
            try:
                lc.need_cluster().guard(ns)
            except ProtectedNamespaceError as exc:
                refuse(lc, account, dep, str(exc))
            waiting = _cleanup_one(
                lc, account, dep, delete_after, workload_done, policy, legacy=ns not in shared, outcome=outcome
            )
            if waiting:
                h.waiting(waiting)


def refuse(lc, account: Account, dep: Deployment, why: str) -> None:
    lc.event(
        key=f"guard:{dep.id}:{dep.namespace}",
        account_id=account.id,
        deployment_id=dep.id,
        kind="guard",
        action="refuse_cleanup",
        outcome="refused",
        target={"namespace": dep.namespace},
        detail={"why": why},
    )
    raise ProtectedNamespaceError(f"cleanup of deployment {dep.id} ({account.id}) refused: {why}.")


def _cleanup_one(
    lc,
    account: Account,
    dep: Deployment,
    delete_after: datetime,
    workload_done: datetime | None,
    policy: str,
    *,
    legacy: bool,
    outcome,
) -> str | None:
    """Carry the cleanup as far as it can go now; what it still waits for, if anything."""
    cluster = lc.need_cluster()
    kinds = [k for k in KINDS if (workload_done is None and k in WORKLOAD_KINDS) or k == PVC]
    found = discover(cluster, account.id, dep, legacy_by_name=legacy, kinds=kinds)
    volumes_due = lc.now >= delete_after
    snapshot_first = handling(policy, account.id).snapshot_first
    if lc.dry_run:
        for obj in found:
            if obj.kind != PVC or volumes_due:
                if obj.kind == PVC and snapshot_first:
                    snapshots.ready_to_delete(lc, account, dep, obj.name, obj.size_bytes)
                lc.event(
                    key=f"cleanup:{dep.id}:delete:{obj.kind}:{obj.namespace}/{obj.name}",
                    account_id=account.id,
                    deployment_id=dep.id,
                    kind="cluster_call",
                    action="delete",
                    outcome="done",
                    target=target(obj.kind, obj.namespace, obj.name, found_by=obj.found_by),
                )
        return None
    with lc.conn.transaction():
        for obj in found:
            if store.plan_object(
                lc.conn,
                deployment_id=dep.id,
                kind=obj.kind,
                namespace=obj.namespace,
                name=obj.name,
                found_by=obj.found_by,
                uid=obj.uid,
                size_bytes=obj.size_bytes,
                now=lc.now,
            ):
                lc.event(
                    key=f"cleanup:{dep.id}:plan:{obj.kind}:{obj.namespace}/{obj.name}",
                    account_id=account.id,
                    deployment_id=dep.id,
                    kind="cleanup",
                    action="planned_delete",
                    outcome="done",
                    target=target(
                        obj.kind, obj.namespace, obj.name, uid=obj.uid, found_by=obj.found_by, size_bytes=obj.size_bytes
                    ),
                )
    if workload_done is None:
        delete_objects(lc, account, dep, store.pending_objects(lc.conn, dep.id, WORKLOAD_KINDS), outcome)
        with lc.conn.transaction():
            store.cleanup_workload_done(lc.conn, dep.id, lc.now)
            hosts = store.release_domains(lc.conn, dep.id)
            lc.event(
                key=f"cleanup:{dep.id}:workload_deleted",
                account_id=account.id,
                deployment_id=dep.id,
                kind="cleanup",
                action="workload_deleted",
                outcome="done",
                target={"namespace": dep.namespace, "deployment": dep.name},
            )
            if hosts:
                lc.event(
                    key=f"cleanup:{dep.id}:domains_released",
                    account_id=account.id,
                    deployment_id=dep.id,
                    kind="domains",
                    action="domains_released",
                    outcome="done",
                    target={"hostnames": sorted(hosts)},
                )
        outcome.actions.append(f"deleted workload of {dep.namespace}/{dep.name}")
    if not volumes_due:
        kept = sorted(p[2] for p in store.pending_objects(lc.conn, dep.id, [PVC]))
        return (
            f"PVC(s) {', '.join(kept)} kept under the {policy} policy until {fmt_time(delete_after)}" if kept else None
        )
    pvcs = store.pending_objects(lc.conn, dep.id, [PVC])
    if snapshot_first:
        ready = [p for p in pvcs if snapshots.ready_to_delete(lc, account, dep, p[2], p[5])]
        delete_objects(lc, account, dep, ready, outcome)
        if len(ready) < len(pvcs):
            waiting = sorted(p[2] for p in pvcs if p not in ready)
            return f"PVC(s) {', '.join(waiting)} kept until their VolumeSnapshots are ready to use"
    else:
        delete_objects(lc, account, dep, pvcs, outcome)
    with lc.conn.transaction():
        store.cleanup_volumes_done(lc.conn, dep.id, lc.now)
        lc.event(
            key=f"cleanup:{dep.id}:volumes_deleted",
            account_id=account.id,
            deployment_id=dep.id,
            kind="cleanup",
            action="volumes_deleted",
            outcome="done",
            target={"namespace": dep.namespace, "deployment": dep.name},
        )
    return None


def delete_objects(lc, account: Account, dep: Deployment, pending: Iterable[tuple], outcome) -> None:
    order = {k: i for i, k in enumerate(KINDS)}
    cluster = lc.need_cluster()
    for kind, ns, name, found_by, uid, _size in sorted(pending, key=lambda r: (order[r[0]], r[1], r[2])):
        if ns != dep.namespace:
            refuse(lc, account, dep, f"{kind} {ns}/{name} is outside the deployment's namespace {dep.namespace}")
        tgt = target(kind, ns, name, uid=uid, found_by=found_by)
        try:
            result = cluster.delete(kind, ns, name)
        except ClusterCallError as exc:
            with lc.conn.transaction():
                store.object_failed(lc.conn, dep.id, kind, ns, name, str(exc))
                lc.failed(account, dep.id, f"delete:{kind}:{ns}/{name}", "delete", tgt, exc)
            raise ClusterCallError(
                f"cleanup of deployment {dep.id} ({dep.namespace}/{dep.name}) of account {account.id} stopped: {exc}",
                status=exc.status,
            ) from None
        with lc.conn.transaction():
            store.mark_object(
                lc.conn, dep.id, kind, ns, name, "deleted" if result.outcome == "done" else "already_absent", lc.now
            )
            if lc.event(
                key=f"cleanup:{dep.id}:delete:{kind}:{ns}/{name}",
                account_id=account.id,
                deployment_id=dep.id,
                kind="cluster_call",
                action="delete",
                outcome=result.outcome,
                target=tgt,
            ):
                outcome.actions.append(
                    f"deleted {kind} {ns}/{name}" if result.outcome == "done" else f"{kind} {ns}/{name} already absent"
                )
