"""Staged suspension: after ``scale_to_zero_after_hours`` of grace, Deployments scaled to zero.

Optional per account (``accounts.scale_to_zero_after_hours``; null: off). Each Deployment's
replica count is saved first (own commit), then the Deployment is replaced with ``replicas: 0``
(PUT at the ``resourceVersion`` it was read at). A top-up puts the saved count back exactly.
Keys and saved rows make a re-run, or a run after a kill, do nothing twice.
"""

from __future__ import annotations

from datetime import datetime

from billing_pipeline.lifecycle import store
from billing_pipeline.lifecycle.actions import tracked
from billing_pipeline.lifecycle.discovery import owned_objects, target
from billing_pipeline.lifecycle.notices import scale_to_zero_at
from billing_pipeline.lifecycle.store import Account, Deployment
from billing_pipeline.resources.cluster import ClusterCallError


def _replicas(obj: dict) -> int:
    spec = obj.get("spec") or {}
    return 1 if spec.get("replicas") is None else int(spec["replicas"])  # the API server's default is 1


def scale_down_if_due(lc, account: Account, episode: int, grace_entered_at: datetime, outcome) -> None:
    due = scale_to_zero_at(account, grace_entered_at)
    if due is None or lc.now < due:
        return
    shared = store.shared_namespaces(lc.conn, account.id)  # no legacy match by name there: it may be theirs
    for dep in store.live_deployments(lc.conn, account.id):
        with tracked(
            lc,
            account.id,
            f"scale:{dep.id}",
            "scale_to_zero",
            dep.id,
            {"namespace": dep.namespace, "deployment": dep.name},
        ):
            cluster = lc.need_cluster()
            for obj in owned_objects(
                cluster, account.id, dep, "Deployment", legacy_by_name=dep.namespace not in shared
            ):
                _scale_down(lc, account, dep, episode, obj, outcome)


def _scale_down(lc, account: Account, dep: Deployment, episode: int, obj: dict, outcome) -> None:
    ns, name = dep.namespace, obj["metadata"]["name"]
    key = f"{account.id}:{episode}:scale_to_zero:{ns}/{name}"
    tgt = target("Deployment", ns, name, uid=obj["metadata"].get("uid"))
    if lc.dry_run:
        lc.event(
            key=key,
            account_id=account.id,
            deployment_id=dep.id,
            kind="cluster_call",
            action="scale_to_zero",
            outcome="done",
            target=tgt,
            detail={"replicas": _replicas(obj)},
        )
        return
    saved, _ = store.save_scale(
        lc.conn,
        namespace=ns,
        name=name,
        account_id=account.id,
        deployment_id=dep.id,
        episode=episode,
        replicas=_replicas(obj),
        now=lc.now,
    )
    if _replicas(obj) != 0:
        try:
            lc.cluster.replace("Deployment", ns, {**obj, "spec": {**obj["spec"], "replicas": 0}})
        except ClusterCallError as exc:
            lc.failed(account, dep.id, f"scale_to_zero:{ns}/{name}", "scale_to_zero", tgt, exc)
            raise
    with lc.conn.transaction():
        store.mark_scale(lc.conn, ns, name, "scaled", lc.now)
        if lc.event(
            key=key,
            account_id=account.id,
            deployment_id=dep.id,
            kind="cluster_call",
            action="scale_to_zero",
            outcome="done",
            target=tgt,
            detail={"saved_replicas": saved},
        ):
            outcome.actions.append(f"scaled Deployment {ns}/{name} to zero (saved replicas: {saved})")


def restore(lc, account: Account, outcome) -> None:
    """Give every Deployment scaled to zero its saved replica count back."""
    by_dep: dict[str, list[dict]] = {}
    for row in store.saved_scales(lc.conn, account.id):
        by_dep.setdefault(row["deployment_id"], []).append(row)
    for dep_id, rows in by_dep.items():
        with tracked(
            lc,
            account.id,
            f"scale:{dep_id}",
            "scale_restore",
            dep_id,
            {"namespace": rows[0]["namespace"], "deployments": [r["name"] for r in rows]},
        ):
            cluster = lc.need_cluster()
            for r in rows:
                _restore_one(lc, cluster, account, dep_id, r, outcome)


def _restore_one(lc, cluster, account: Account, dep_id: str, r: dict, outcome) -> None:
    ns, name = r["namespace"], r["name"]
    key = f"{account.id}:{r['episode']}:scale_restore:{ns}/{name}"
    tgt = target("Deployment", ns, name)
    if lc.dry_run:
        lc.event(
            key=key,
            account_id=account.id,
            deployment_id=dep_id,
            kind="cluster_call",
            action="scale_restore",
            outcome="done",
            target=tgt,
            detail={"replicas": r["replicas"]},
        )
        return
    current = cluster.get("Deployment", ns, name)
    if current is not None and _replicas(current) != r["replicas"]:
        try:
            cluster.replace("Deployment", ns, {**current, "spec": {**current["spec"], "replicas": r["replicas"]}})
        except ClusterCallError as exc:
            lc.failed(account, dep_id, f"scale_restore:{ns}/{name}", "scale_restore", tgt, exc)
            raise
    with lc.conn.transaction():
        store.mark_scale(lc.conn, ns, name, "gone" if current is None else "restored", lc.now)
        if lc.event(
            key=key,
            account_id=account.id,
            deployment_id=dep_id,
            kind="cluster_call",
            action="scale_restore",
            outcome="already_absent" if current is None else "done",
            target=tgt,
            detail={"replicas": r["replicas"]},
        ):
            outcome.actions.append(f"restored Deployment {ns}/{name} to {r['replicas']} replica(s)")
