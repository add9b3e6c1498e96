"""``billing cleanup-preview``: exactly the objects the cleanup would delete if it ran now, read
from the cluster (no writes)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import psycopg

from billing_pipeline.core.errors import InputError
from billing_pipeline.lifecycle import store
from billing_pipeline.lifecycle.discovery import discover
from billing_pipeline.lifecycle.store import Deployment
from billing_pipeline.lifecycle.volumes import handling
from billing_pipeline.resources.cluster import Cluster


def cleanup_preview(conn: psycopg.Connection, cluster: Cluster, account_id: str, now: datetime) -> dict[str, Any]:
    """What the cleanup would delete now (``delete``), keep (``keep``) or refuse to touch (``refused``).
    Under ``volume_policy=snapshot`` each PVC to delete carries ``snapshot_first``: it is deleted only
    once its VolumeSnapshot is ready to use."""
    account = store.load_account(conn, account_id)
    if account is None:
        raise InputError(f"unknown account {account_id!r}: not in billing.accounts.")
    shared = store.shared_namespaces(conn, account_id)
    cleanups = store.cleanups_of(conn, account_id)
    delete, keep, refused = [], [], []
    for dep in store.account_deployments(conn, account_id):
        c = cleanups.get(dep.id)
        if c is not None and (c["volumes_done_at"] is not None or c["cancelled_at"] is not None):
            continue
        if dep.namespace in cluster.protected:
            refused.append(
                {
                    "deployment_id": dep.id,
                    "namespace": dep.namespace,
                    "why": f"namespace {dep.namespace} is protected: the cleanup refuses to act there",
                }
            )
            continue
        policy = c["volume_policy"] if c else account.volume_policy
        delete_after = c["volumes_delete_after"] if c else None
        volumes_due = (delete_after is None and not handling(policy, account_id).retained) or (
            delete_after is not None and now >= delete_after
        )
        found = discover(
            cluster,
            account_id,
            Deployment(dep.id, account_id, dep.namespace, dep.name),
            legacy_by_name=dep.namespace not in shared,
        )
        for obj in found:
            item = {
                "deployment_id": dep.id,
                "kind": obj.kind,
                "namespace": obj.namespace,
                "name": obj.name,
                "found_by": obj.found_by,
                "size_bytes": obj.size_bytes,
            }
            if obj.kind == "PersistentVolumeClaim" and not volumes_due:
                keep.append(
                    {**item, "kept_until": delete_after or (now + timedelta(days=account.volume_retention_days))}
                )
            elif obj.kind != "PersistentVolumeClaim" and c is not None and c["workload_done_at"] is not None:
                continue
            else:
                if obj.kind == "PersistentVolumeClaim":
                    item["snapshot_first"] = handling(policy, account_id).snapshot_first
                delete.append(item)
    return {
        "account_id": account_id,
        "now": now,
        "volume_policy": account.volume_policy,
        "snapshot_class": cluster.snapshot_class,
        "delete": delete,
        "keep": keep,
        "refused": refused,
    }
