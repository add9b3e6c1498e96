"""What ``billing status`` says about an account's lifecycle: the state, the deadline, and for
each deployment and volume what happened or will happen, with each cluster action as it is
(done, pending or failed with its error), never as done when it is not.

Plain words, and nothing that promises data survives expiry unless the policy in force keeps it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

from billing_pipeline.core.errors import InputError
from billing_pipeline.lifecycle import notices, store
from billing_pipeline.lifecycle.actions import RETRY_EVERY_MINUTES, not_done_text
from billing_pipeline.lifecycle.machine import State, state_for_balance
from billing_pipeline.lifecycle.preview import cleanup_preview  # noqa: F401  (re-exported)
from billing_pipeline.lifecycle.store import fmt_size, fmt_time
from billing_pipeline.lifecycle.volumes import handling, volumes_delete_after

MEANING = {
    "healthy": "normal operation",
    "low_balance": "the balance is at or below the warning threshold; everything still runs",
    "grace_period": "the balance is used up: domains are suspended and routing is to go to a suspension page "
    "(each deployment below says whether the cluster has done it); workloads keep running",
    "expired": "the grace period ended with the balance at or below zero: deployments are deleted",
}
WORKLOAD = notices.WORKLOAD_OBJECTS


def accounts_overview(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Every account with its name, lifecycle state and balance, by id (what ``billing accounts`` lists).

    The state is the persisted one when the lifecycle has evaluated the account, else the state
    its balance implies (``state_for_balance``, as ``billing status`` says it); ``evaluated``
    tells which."""
    return [
        {
            "account_id": account_id,
            "name": name,
            "state": state or state_for_balance(balance, threshold).value,
            "evaluated": state is not None,
            "balance": balance,
            "low_balance_threshold": threshold,
        }
        for account_id, name, balance, threshold, state in store.account_rows(conn)
    ]


def lifecycle_status(
    conn: psycopg.Connection, account_id: str, now: datetime, snapshot_class: str | None = None
) -> dict[str, Any]:
    """The account's state, deadline, what happens at expiry to each deployment and volume, and the
    state of every cluster action (``actions``)."""
    account = store.load_account(conn, account_id)
    if account is None:
        raise InputError(f"unknown account {account_id!r}: not in billing.accounts.")
    snap = store.lock_snapshot(conn, account_id, now, lock=False)
    state = snap.state.value if snap else state_for_balance(account.balance, account.low_balance_threshold).value
    deadline = snap.grace_deadline if snap and snap.state in (State.GRACE_PERIOD, State.EXPIRED) else None
    grace_entered = snap.entered_at if snap and snap.state == State.GRACE_PERIOD else None
    cause = _state_cause(conn, account_id, state) if snap else None
    deployments = store.account_deployments(conn, account_id)
    cleanups = store.cleanups_of(conn, account_id)
    actions = store.actions_of(conn, account_id)
    domains = store.domains_of(conn, [d.id for d in deployments])
    cleaned = store.cleaned_pvcs(conn, account_id)
    snaps = store.snapshots_of(conn, account_id)
    volumes = {
        (v.namespace, v.name, v.deployment_id): v.size_bytes
        for v in store.known_volumes(conn, [d.id for d in deployments])
    }
    for key, row in cleaned.items():
        volumes.setdefault(key, row["size_bytes"])
    # When expiry would happen for a deployment not yet cleaned up.
    at = deadline if state == "grace_period" else now if state == "expired" else None

    dep_out = []
    for dep in deployments:
        c = cleanups.get(dep.id)
        hosts = [h for h, _ in domains.get(dep.id, [])]
        text, fate = _deployment_text(account, dep, c, hosts, state, at, actions)
        text += _routing_text(state, dep.id, actions, c)
        text += _scale_text(account, state, dep.id, grace_entered, actions, c)
        dep_out.append(
            {
                "deployment_id": dep.id,
                "namespace": dep.namespace,
                "name": dep.name,
                "fate": fate,
                "domains": hosts,
                "text": text,
                "actions": _actions_json(actions, dep.id),
            }
        )
    vol_out = []
    for (ns, pvc, dep_id), size in sorted(volumes.items()):
        text, fate, when = _volume_text(
            account,
            ns,
            pvc,
            size,
            cleanups.get(dep_id),
            cleaned.get((ns, pvc, dep_id)),
            snaps.get((ns, pvc, dep_id)),
            actions.get(f"snapshot:{ns}/{pvc}"),
            at,
            now,
            snapshot_class,
        )
        vol_out.append(
            {
                "namespace": ns,
                "name": pvc,
                "deployment_id": dep_id,
                "size_bytes": size,
                "fate": fate,
                "deletes_at": when,
                "text": text,
            }
        )
    return {
        "account_id": account.id,
        "name": account.name,
        "balance": account.balance,
        "low_balance_threshold": account.low_balance_threshold,
        "state": state,
        "meaning": MEANING[state],
        "evaluated": snap is not None,
        "entered_at": snap.entered_at if snap else None,
        "cause": cause,
        "grace_deadline": deadline,
        "grace_period_hours": account.grace_period_hours,
        "volume_policy": account.volume_policy,
        "volume_policy_text": notices.volume_policy_words(account),
        "volume_retention_days": account.volume_retention_days,
        "early_idle_deletion": account.early_idle_deletion,
        "scale_to_zero_after_hours": account.scale_to_zero_after_hours,
        "scale_to_zero_at": notices.scale_to_zero_at(account, grace_entered),
        "deployments": dep_out,
        "volumes": vol_out,
        "actions": _actions_json(actions, None),
    }


def _state_cause(conn: psycopg.Connection, account_id: str, state: str) -> dict[str, Any] | None:
    """Why the account is in its state, when credits expiring took it there: the cause recorded on
    the transition into the current state (``engine``), else None."""
    last = store.latest_transition(conn, account_id)
    if last is None or last["to_state"] != state:
        return None
    return last["detail"].get("cause")


def _actions_json(actions: dict, dep_id: str | None) -> list[dict]:
    return [
        {
            "key": k,
            "action": a["action"],
            "state": a["state"],
            "target": a["target"],
            "error": a["last_error"],
            "http_status": a["last_status"],
            "attempts": a["attempts"],
            "last_attempt_at": a["last_attempt_at"],
            "done_at": a["done_at"],
        }
        for k, a in actions.items()
        if dep_id is None or a["deployment_id"] == dep_id
    ]


def _deployment_text(account, dep, c, hosts, state, at, actions) -> tuple[str, str]:
    where = f"Deployment {dep.name} (namespace {dep.namespace})"
    doms = f"; domains {', '.join(hosts)} released" if hosts else ""
    if c is None:
        doms = doms.replace("released", "then released")
        if at is None:
            return (
                f"{where} would be deleted with {WORKLOAD} at the end of a {account.grace_period_hours}-hour grace "
                f"period if the balance reaches zero{doms}.",
                "none_scheduled",
            )
        if state == "expired":
            return f"{where} will be deleted with {WORKLOAD} at the next lifecycle run{doms}.", "pending_expiry"
        return (
            f"{where} will be deleted with {WORKLOAD} on {fmt_time(at)} unless the balance is above zero "
            f"before then{doms}.",
            "pending_expiry",
        )
    why = "idle, deleted early during the grace period" if c["reason"] == "idle" else "expired"
    if c["workload_done_at"]:
        return f"{where} was deleted on {fmt_time(c['workload_done_at'])} ({why}){doms}.", "deleted"
    row = actions.get(f"cleanup:{dep.id}")
    return (
        f"{where} is not deleted yet ({why}; the cleanup started on {fmt_time(c['started_at'])}): "
        + not_done_text(row, "deletion not yet complete")
        + ".",
        "deleting",
    )


def _routing_text(state: str, dep_id: str, actions: dict, cleanup_row) -> str:
    row = actions.get(f"routing:{dep_id}")
    if state == "grace_period" and cleanup_row is None:
        if row and row["action"] == "routing_off" and row["state"] == "done":
            return (
                f" Routing is disabled: its Ingresses send visitors to the suspension page (since "
                f"{fmt_time(row['done_at'])})."
            )
        return (
            " "
            + not_done_text(row if row and row["action"] == "routing_off" else None, "Routing not yet disabled")
            + "."
        )
    if row and row["action"] == "routing_restore" and row["state"] != "done":
        return " " + not_done_text(row, "Routing not yet restored") + "."
    return ""


def _scale_text(account, state: str, dep_id: str, grace_entered, actions: dict, cleanup_row) -> str:
    row = actions.get(f"scale:{dep_id}")
    if state == "grace_period" and cleanup_row is None and account.scale_to_zero_after_hours is not None:
        if row and row["action"] == "scale_to_zero" and row["state"] == "done":
            return (
                f" Scaled to zero on {fmt_time(row['done_at'])}; its replica counts are saved and a top-up "
                "restores them exactly."
            )
        if row and row["action"] == "scale_to_zero":
            return " " + not_done_text(row, "Not yet scaled to zero") + "."
        return (
            f" It will be scaled to zero on {fmt_time(notices.scale_to_zero_at(account, grace_entered))} "
            "(replica counts saved; a top-up restores them exactly)."
        )
    if row and row["action"] == "scale_restore" and row["state"] != "done":
        return " " + not_done_text(row, "Replicas not yet restored") + "."
    return ""


def _volume_text(account, ns, pvc, size, c, cleaned, snap, snap_action, at, now, snapshot_class):
    """(text, fate, deletes_at) of one PVC."""
    size_words = f"PVC {pvc} ({fmt_size(size)})"
    if snap is not None and snap["status"] in ("ready", "deleted"):
        kept = (
            f"its VolumeSnapshot {ns}/{snap['snapshot_name']} was deleted on {fmt_time(snap['deleted_at'])} at the "
            "end of its retention"
            if snap["status"] == "deleted"
            else f"its VolumeSnapshot {ns}/{snap['snapshot_name']} is kept until {fmt_time(snap['delete_after'])}, "
            "then deleted with its data"
        )
        gone = (
            f"was deleted on {fmt_time(cleaned['done_at'])}"
            if cleaned and cleaned["status"] != "pending"
            else "is being deleted"
        )
        return (f"{size_words} {gone} after its snapshot was ready; {kept}.", "snapshotted", snap["delete_after"])
    if cleaned and cleaned["status"] in ("deleted", "already_absent"):
        return (
            f"{size_words} was deleted with its data on {fmt_time(cleaned['done_at'])}.",
            "deleted",
            cleaned["done_at"],
        )
    if c is not None and c["cancelled_at"] is not None:
        return (
            f"{size_words} is kept: its deletion was cancelled when the account was re-activated on "
            f"{fmt_time(c['cancelled_at'])}.",
            "kept",
            None,
        )
    if c is not None and handling(c["volume_policy"], account.id).snapshot_first:
        if snap is None:
            return (
                f"{size_words} will be captured as a VolumeSnapshot at the next lifecycle run; the PVC is deleted "
                "once the snapshot is ready to use.",
                "snapshotting",
                None,
            )
        if snap["status"] != "failed" and snap_action is not None and snap_action["state"] == "pending":
            return (
                f"{size_words} is kept with its data until its VolumeSnapshot {ns}/{snap['snapshot_name']} is ready "
                f"to use (not ready at {fmt_time(snap_action['last_attempt_at'])}; checked again every "
                f"{RETRY_EVERY_MINUTES} minutes); then the PVC is deleted with its data and the snapshot kept "
                f"{account.volume_retention_days} days.",
                "snapshotting",
                None,
            )
        what = "Snapshot failed" if snap["status"] == "failed" else "Snapshot not taken yet"
        return (f"{size_words} is kept with its data: " + not_done_text(snap_action, what) + ".", "snapshotting", None)
    if c is not None:
        when = c["volumes_delete_after"]
        if when <= now:
            return (
                f"{size_words} is not deleted yet: "
                + not_done_text(
                    None if cleaned is None else {"last_error": cleaned["last_error"], "last_attempt_at": now},
                    "deletion pending",
                )
                + ".",
                "deleting",
                when,
            )
        return (
            f"{size_words} is kept under the retain policy until {fmt_time(when)}, then will be deleted with its data.",
            "retained",
            when,
        )
    text = notices.volume_fate_line(account, pvc, size, at, snapshot_class)
    when = None
    if at is not None:
        when = volumes_delete_after(account, at)
    return text, "pending_expiry" if at else "none_scheduled", when
