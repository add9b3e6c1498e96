"""What ``billing status`` and ``billing cleanup-preview`` say about an account's lifecycle.

Plain words, and nothing that promises data survives expiry unless the policy in force keeps it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import psycopg

from billing_pipeline.errors import InputError
from billing_pipeline.lifecycle import store
from billing_pipeline.lifecycle.cluster import Cluster
from billing_pipeline.lifecycle.engine import discover, volume_fate_line
from billing_pipeline.lifecycle.machine import State
from billing_pipeline.lifecycle.store import Deployment, fmt_size, fmt_time

MEANING = {
    "healthy": "normal operation",
    "low_balance": "the balance is at or below the warning threshold; everything still runs",
    "grace_period": "the balance is used up: routing is disabled and domains suspended, workloads keep running",
    "expired": "the grace period ended with the balance at or below zero: deployments are deleted",
}


def _by_balance(balance, threshold) -> str:
    if balance <= 0:
        return "grace_period"
    return "low_balance" if balance <= threshold else "healthy"


def lifecycle_status(conn: psycopg.Connection, account_id: str, now: datetime) -> dict[str, Any]:
    """The account's state, deadline, and what happens at expiry to each deployment and volume."""
    account = store.load_account(conn, account_id)
    if account is None:
        raise InputError(f"unknown account {account_id!r}: not in billing.accounts.")
    snap = store.lock_snapshot(conn, account_id, now, lock=False)
    evaluated = snap is not None
    state = snap.state.value if snap else _by_balance(account.balance, account.low_balance_threshold)
    deadline = snap.grace_deadline if snap and snap.state in (State.GRACE_PERIOD, State.EXPIRED) else None

    deployments = conn.execute(
        "SELECT id, namespace, name FROM billing.deployments WHERE account_id = %s AND deleted_at IS NULL "
        "ORDER BY namespace, name, id", (account_id,)).fetchall()
    cleanups = {r[0]: r for r in conn.execute(
        "SELECT deployment_id, reason, started_at, workload_done_at, volumes_delete_after, volumes_done_at, "
        "cancelled_at, volume_policy FROM billing.lifecycle_cleanups WHERE account_id = %s", (account_id,)).fetchall()}
    domains = store.domains_of(conn, [d[0] for d in deployments])
    cleaned_pvcs = {(r[0], r[1], r[2]): r for r in conn.execute(
        "SELECT o.namespace, o.name, o.deployment_id, o.status, o.size_bytes, o.done_at "
        "FROM billing.lifecycle_cleanup_objects o JOIN billing.lifecycle_cleanups c USING (deployment_id) "
        "WHERE c.account_id = %s AND o.kind = 'PersistentVolumeClaim'", (account_id,)).fetchall()}
    volumes = {(v.namespace, v.name, v.deployment_id): v.size_bytes
               for v in store.known_volumes(conn, [d[0] for d in deployments])}
    for key, row in cleaned_pvcs.items():
        volumes.setdefault(key, row[4])

    # When expiry would happen for a deployment not yet cleaned up.
    if state == "grace_period" and deadline:
        at, tense = deadline, "will"
    elif state == "expired":
        at, tense = now, "will"
    else:
        at, tense = None, "would"

    dep_out, vol_out = [], []
    for dep_id, ns, name in deployments:
        c = cleanups.get(dep_id)
        hosts = [h for h, _ in domains.get(dep_id, [])]
        doms = f"; domains {', '.join(hosts)} released" if hosts else ""
        if c is None:
            doms = doms.replace("released", "then released")
            if at is None:
                text = (f"Deployment {name} (namespace {ns}) would be deleted with its Services, Ingresses, "
                        f"ConfigMaps and Secrets at the end of a {account.grace_period_hours}-hour grace period "
                        f"if the balance reaches zero{doms}.")
            elif state == "expired":
                text = (f"Deployment {name} (namespace {ns}) will be deleted with its Services, Ingresses, "
                        f"ConfigMaps and Secrets at the next lifecycle run{doms}.")
            else:
                text = (f"Deployment {name} (namespace {ns}) will be deleted with its Services, Ingresses, "
                        f"ConfigMaps and Secrets on {fmt_time(at)} unless the balance is above zero before then{doms}.")
            fate = "pending_expiry" if at else "none_scheduled"
        else:
            why = "idle, deleted early during the grace period" if c[1] == "idle" else "expired"
            if c[3]:
                text = f"Deployment {name} (namespace {ns}) was deleted on {fmt_time(c[3])} ({why}){doms}."
                fate = "deleted"
            else:
                text = (f"Deployment {name} (namespace {ns}) is being deleted ({why}); the cleanup started on "
                        f"{fmt_time(c[2])} and completes at the next run.")
                fate = "deleting"
        dep_out.append({"deployment_id": dep_id, "namespace": ns, "name": name, "fate": fate,
                        "domains": hosts, "text": text})

    for (ns, pvc, dep_id), size in sorted(volumes.items()):
        c = cleanups.get(dep_id)
        done = cleaned_pvcs.get((ns, pvc, dep_id))
        if done and done[3] in ("deleted", "already_absent"):
            text, fate, when = f"PVC {pvc} ({fmt_size(size)}) was deleted with its data on {fmt_time(done[5])}.", "deleted", done[5]
        elif c is not None and c[6] is not None:
            text, fate, when = (f"PVC {pvc} ({fmt_size(size)}) is kept: its deletion was cancelled when the account "
                                f"was re-activated on {fmt_time(c[6])}.", "kept", None)
        elif c is not None:
            when = c[4]
            if when <= now:
                text, fate = f"PVC {pvc} ({fmt_size(size)}) will be deleted with its data at the next lifecycle run.", "deleting"
            else:
                text, fate = (f"PVC {pvc} ({fmt_size(size)}) is kept under the retain policy until {fmt_time(when)}, "
                              "then will be deleted with its data.", "retained")
        else:
            text = volume_fate_line(account, pvc, size, at)
            fate = "pending_expiry" if at else "none_scheduled"
            when = (at + timedelta(days=account.volume_retention_days) if account.volume_policy == "retain" else at) if at else None
        vol_out.append({"namespace": ns, "name": pvc, "deployment_id": dep_id, "size_bytes": size,
                        "fate": fate, "deletes_at": when, "text": text})

    return {
        "account_id": account.id, "name": account.name, "balance": account.balance,
        "low_balance_threshold": account.low_balance_threshold, "state": state, "meaning": MEANING[state],
        "evaluated": evaluated, "entered_at": snap.entered_at if snap else None, "grace_deadline": deadline,
        "grace_period_hours": account.grace_period_hours, "volume_policy": account.volume_policy,
        "volume_retention_days": account.volume_retention_days, "early_idle_deletion": account.early_idle_deletion,
        "deployments": dep_out, "volumes": vol_out,
    }


def cleanup_preview(conn: psycopg.Connection, cluster: Cluster, account_id: str, now: datetime) -> dict[str, Any]:
    """Exactly the objects the cleanup would delete if it ran now, read from the cluster (no writes)."""
    account = store.load_account(conn, account_id)
    if account is None:
        raise InputError(f"unknown account {account_id!r}: not in billing.accounts.")
    shared = store.shared_namespaces(conn, account_id)
    rows = conn.execute(
        "SELECT d.id, d.namespace, d.name, c.workload_done_at, c.volumes_delete_after, c.volumes_done_at, c.cancelled_at "
        "FROM billing.deployments d LEFT JOIN billing.lifecycle_cleanups c ON c.deployment_id = d.id "
        "WHERE d.account_id = %s AND (c.deployment_id IS NULL AND d.deleted_at IS NULL "
        "OR c.volumes_done_at IS NULL AND c.cancelled_at IS NULL) ORDER BY d.namespace, d.name",
        (account_id,)).fetchall()
    delete, keep, refused = [], [], []
    for dep_id, ns, name, workload_done, delete_after, _, _ in rows:
        if ns in cluster.protected:
            refused.append({"deployment_id": dep_id, "namespace": ns,
                            "why": f"namespace {ns} is protected: the cleanup refuses to act there"})
            continue
        volumes_due = delete_after is None and account.volume_policy == "delete" or (delete_after is not None and now >= delete_after)
        for obj in discover(cluster, account_id, Deployment(dep_id, account_id, ns, name), legacy_by_name=ns not in shared):
            item = {"deployment_id": dep_id, "kind": obj.kind, "namespace": obj.namespace, "name": obj.name,
                    "found_by": obj.found_by, "size_bytes": obj.size_bytes}
            if obj.kind == "PersistentVolumeClaim" and not volumes_due:
                until = delete_after or (now + timedelta(days=account.volume_retention_days))
                keep.append({**item, "kept_until": until})
            elif obj.kind != "PersistentVolumeClaim" and workload_done is not None:
                continue
            else:
                delete.append(item)
    return {"account_id": account_id, "now": now, "volume_policy": account.volume_policy,
            "delete": delete, "keep": keep, "refused": refused}
