"""``volume_policy=snapshot``: each PVC captured as a CSI VolumeSnapshot before it is deleted.

At expiry, for each PVC of the deployment: create a ``snapshot.storage.k8s.io/v1`` VolumeSnapshot
of it (class ``Cluster.snapshot_class``, else the cluster's default), named after the PVC and
labelled with the deployment and account ids. The PVC is deleted only once the snapshot reports
``readyToUse``; until then the action stays pending and every later run looks once more (no
waiting loop inside a run). A snapshot that reports an error leaves the PVC in place and stops
with an error saying what to do. A ready snapshot is kept ``volume_retention_days`` from the
moment it was ready, then deleted.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from billing_pipeline.core.errors import BillingError
from billing_pipeline.lifecycle import store
from billing_pipeline.lifecycle.actions import tracked
from billing_pipeline.lifecycle.discovery import target
from billing_pipeline.lifecycle.notices import snapshot_class_words
from billing_pipeline.lifecycle.store import Account, Deployment
from billing_pipeline.resources.cluster import ACCOUNT_ID_LABEL, DEPLOYMENT_ID_LABEL, ClusterCallError


class SnapshotFailed(BillingError):
    """The snapshot controller reported an error: the PVC is kept."""


def snapshot_name(deployment_id: str, pvc: str) -> str:
    return f"{pvc[:200]}-expiry-{hashlib.sha1(f'{deployment_id}/{pvc}'.encode()).hexdigest()[:8]}"


def snapshot_body(account_id: str, dep: Deployment, pvc: str, snapshot_class: str | None) -> dict:
    spec: dict = {"source": {"persistentVolumeClaimName": pvc}}
    if snapshot_class:
        spec["volumeSnapshotClassName"] = snapshot_class
    return {
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshot",
        "metadata": {
            "name": snapshot_name(dep.id, pvc),
            "namespace": dep.namespace,
            "labels": {
                DEPLOYMENT_ID_LABEL: dep.id,
                ACCOUNT_ID_LABEL: account_id,
                "app.kubernetes.io/managed-by": "satusky-billing",
            },
        },
        "spec": spec,
    }


def ready_to_delete(lc, account: Account, dep: Deployment, pvc: str, size_bytes) -> bool:
    """Whether the snapshot of ``pvc`` is ready (then the PVC may be deleted); takes it if needed."""
    ns, name = dep.namespace, snapshot_name(dep.id, pvc)
    tgt = target("VolumeSnapshot", ns, name, pvc=pvc)
    with tracked(lc, account.id, f"snapshot:{ns}/{pvc}", "snapshot_then_delete_pvc", dep.id, tgt) as handle:
        if lc.dry_run:
            lc.event(
                key=f"snapshot:{ns}/{name}:created",
                account_id=account.id,
                deployment_id=dep.id,
                kind="cluster_call",
                action="create_snapshot",
                outcome="done",
                target=tgt,
            )
            return True
        cluster = lc.need_cluster()
        store.plan_snapshot(
            lc.conn,
            namespace=ns,
            snapshot_name=name,
            pvc=pvc,
            deployment_id=dep.id,
            account_id=account.id,
            snapshot_class=cluster.snapshot_class,
            size_bytes=size_bytes,
            now=lc.now,
        )
        row = store.snapshot_of(lc.conn, ns, name)
        if row["status"] == "ready":
            return True
        obj = None if row["status"] == "planned" else cluster.get("VolumeSnapshot", ns, name)
        if obj is None:
            obj = _create(lc, account, dep, pvc, tgt)
        status = obj.get("status") or {}
        if status.get("error"):
            why = (status["error"] or {}).get("message") or "no message"
            store.mark_snapshot(lc.conn, ns, name, "failed", lc.now, error=why)
            lc.event(
                key=f"snapshot:{ns}/{name}:failed:{store.count_events(lc.conn, f'snapshot:{ns}/{name}:failed:') + 1}",
                account_id=account.id,
                deployment_id=dep.id,
                kind="cluster_call",
                action="snapshot_failed",
                outcome="failed",
                target=tgt,
                detail={"error": why},
            )
            raise SnapshotFailed(
                f"VolumeSnapshot {ns}/{name} of PVC {pvc} failed ({why}); the PVC is kept with its data. Check the CSI "
                f"driver and {snapshot_class_words(cluster.snapshot_class)} (BILLING_SNAPSHOT_CLASS), then delete the "
                f"failed snapshot (kubectl -n {ns} delete volumesnapshot {name}); the next run takes a new one."
            )
        if status.get("readyToUse"):
            delete_after = lc.now + timedelta(days=account.volume_retention_days)
            with lc.conn.transaction():
                store.mark_snapshot(lc.conn, ns, name, "ready", lc.now, delete_after=delete_after)
                lc.event(
                    key=f"snapshot:{ns}/{name}:ready",
                    account_id=account.id,
                    deployment_id=dep.id,
                    kind="cluster_call",
                    action="snapshot_ready",
                    outcome="done",
                    target=tgt,
                    detail={"delete_after": delete_after},
                )
            return True
        store.mark_snapshot(lc.conn, ns, name, "created", lc.now)
        handle.waiting(f"waiting for VolumeSnapshot {ns}/{name} to be ready to use; PVC {pvc} is kept until then")
        return False


def _create(lc, account: Account, dep: Deployment, pvc: str, tgt: dict) -> dict:
    ns, name = dep.namespace, tgt["name"]
    body = snapshot_body(account.id, dep, pvc, lc.cluster.snapshot_class)
    try:
        result = lc.cluster.create("VolumeSnapshot", ns, body)
    except ClusterCallError as exc:
        lc.failed(account, dep.id, f"create_snapshot:{ns}/{name}", "create_snapshot", tgt, exc)
        raise
    source = ((result.object.get("spec") or {}).get("source") or {}).get("persistentVolumeClaimName")
    if source != pvc:
        raise BillingError(
            f"VolumeSnapshot {ns}/{name} exists but captures {source!r}, not PVC {pvc}; "
            "rename or delete it, then re-run grace_period_job."
        )
    n = store.count_events(lc.conn, f"snapshot:{ns}/{name}:created:")
    with lc.conn.transaction():
        store.mark_snapshot(lc.conn, ns, name, "created", lc.now)
        lc.event(
            key=f"snapshot:{ns}/{name}:created:{n + 1}",
            account_id=account.id,
            deployment_id=dep.id,
            kind="cluster_call",
            action="create_snapshot",
            outcome="done",
            target=tgt,
            detail={"snapshot_class": lc.cluster.snapshot_class, "existed": result.outcome == "exists"},
        )
    return result.object


def expire(lc, account: Account, outcome) -> None:
    """Delete the snapshots whose retention ended."""
    if lc.dry_run:
        return
    for row in store.snapshots_due(lc.conn, account.id, lc.now):
        ns, name = row["namespace"], row["snapshot_name"]
        tgt = target("VolumeSnapshot", ns, name, pvc=row["pvc"])
        with tracked(lc, account.id, f"snapshot:{ns}/{row['pvc']}", "delete_snapshot", row["deployment_id"], tgt):
            try:
                result = lc.need_cluster().delete("VolumeSnapshot", ns, name)
            except ClusterCallError as exc:
                lc.failed(account, row["deployment_id"], f"delete_snapshot:{ns}/{name}", "delete", tgt, exc)
                raise
            with lc.conn.transaction():
                store.mark_snapshot(lc.conn, ns, name, "deleted", lc.now)
                if lc.event(
                    key=f"snapshot:{ns}/{name}:deleted",
                    account_id=account.id,
                    deployment_id=row["deployment_id"],
                    kind="cluster_call",
                    action="delete",
                    outcome=result.outcome,
                    target=tgt,
                ):
                    outcome.actions.append(f"deleted VolumeSnapshot {ns}/{name} (retention ended)")
