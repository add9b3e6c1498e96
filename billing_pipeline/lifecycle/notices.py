"""Every sentence the lifecycle tells a customer (notices) and a person (``billing status``) about
what happens to deployments and volumes, built from the same constants the code acts on."""

from __future__ import annotations

from datetime import datetime, timedelta

from billing_pipeline.lifecycle.actions import RETRY_EVERY_MINUTES
from billing_pipeline.lifecycle.machine import IDLE_CPU_CORE_HOURS, IDLE_EGRESS_GIB, IDLE_WINDOW_HOURS
from billing_pipeline.lifecycle.store import Account, Deployment, fmt_size, fmt_time
from billing_pipeline.lifecycle.volumes import handling

WORKLOAD_OBJECTS = "its Services, Ingresses, ConfigMaps and Secrets"
SUSPENSION_PAGE = 'a "suspended, add credits" page'


def snapshot_class_words(snapshot_class: str | None) -> str:
    return f"VolumeSnapshotClass {snapshot_class}" if snapshot_class else "the cluster's default VolumeSnapshotClass"


def volume_fate_line(
    account: Account, pvc: str, size_bytes, at: datetime | None, snapshot_class: str | None = None
) -> str:
    """What happens to one PVC at expiry ``at`` (None: if the account ever expires)."""
    size, days = fmt_size(size_bytes), account.volume_retention_days
    policy = handling(account.volume_policy, account.id)
    if policy.snapshot_first:
        when = "at an expiry" if at is None else f"on {fmt_time(at)}"
        return (
            f"PVC {pvc} ({size}) {'would' if at is None else 'will'} be captured {when} as a CSI VolumeSnapshot "
            f"({snapshot_class_words(snapshot_class)}); the PVC is deleted with its data only once the snapshot "
            f"is ready to use, and the snapshot is kept {days} days after that, then deleted with its data."
        )
    if policy.retained:
        if at is None:
            return f"PVC {pvc} ({size}) would be kept {days} days after an expiry, then deleted with its data."
        return (
            f"PVC {pvc} ({size}) will be kept after expiry until {fmt_time(at + timedelta(days=days))}, "
            "then deleted with its data."
        )
    if at is None:
        return f"PVC {pvc} ({size}) would be deleted with its data at an expiry."
    return f"PVC {pvc} ({size}) will be deleted with its data on {fmt_time(at)}."


def volume_policy_words(account: Account) -> str:
    return handling(account.volume_policy, account.id).words.format(days=account.volume_retention_days)


def volume_policy_sentence(account: Account) -> str:
    """The fate of a deployment's PVCs when it is deleted (idle deletion notice)."""
    return handling(account.volume_policy, account.id).sentence.format(days=account.volume_retention_days)


def scale_to_zero_at(account: Account, grace_entered_at: datetime | None) -> datetime | None:
    if account.scale_to_zero_after_hours is None or grace_entered_at is None:
        return None
    return grace_entered_at + timedelta(hours=account.scale_to_zero_after_hours)


def scale_to_zero_sentence(account: Account, grace_entered_at: datetime | None) -> str:
    at = scale_to_zero_at(account, grace_entered_at)
    if at is None:
        return ""
    return (
        f"After {account.scale_to_zero_after_hours} hours of grace ({fmt_time(at)}) your Deployments are scaled to "
        "zero replicas; their replica counts are saved and a top-up restores them exactly."
    )


def idle_sentence() -> str:
    return (
        f"Early idle deletion is enabled: a deployment idle over the last {IDLE_WINDOW_HOURS} hours (under "
        f"{IDLE_CPU_CORE_HOURS} core-hours of CPU and under {IDLE_EGRESS_GIB} GiB of network egress in total) "
        "may be deleted before the deadline."
    )


def deployment_expiry_line(dep: Deployment, deadline: datetime | None) -> str:
    return f"Deployment {dep.name} (namespace {dep.namespace}) with {WORKLOAD_OBJECTS} will be deleted on {fmt_time(deadline)}."


def grace_body(account: Account, balance, deadline, entered_at, lines: list[str]) -> str:
    body = (
        f"Your balance is {balance} credits. Routing to your deployments is being switched to {SUSPENSION_PAGE} "
        "and your domains are suspended; your workloads keep running. "
    )
    body += scale_to_zero_sentence(account, entered_at)
    body += (
        f"{' ' if account.scale_to_zero_after_hours is not None else ''}Add credits before {fmt_time(deadline)} "
        "to restore everything exactly as it was. Otherwise, at that time:\n"
        + "\n".join(f"- {line}" for line in lines or ["(no deployments)"])
    )
    if account.early_idle_deletion:
        body += "\n" + idle_sentence()
    return body


def recovered_body(account: Account, balance, deadline) -> str:
    scaled = (
        " Deployments scaled to zero get their saved replica counts back."
        if account.scale_to_zero_after_hours is not None
        else ""
    )
    return (
        f"Your balance is above zero again ({balance} credits). The grace period that would have ended on "
        f"{fmt_time(deadline)} is over: routing is being restored exactly as it was and your domains are active "
        f"again.{scaled}"
    )


def expiry_body(lines: list[str]) -> str:
    return (
        "The grace period ended with your balance at or below zero. The following is being deleted now:\n"
        + "\n".join(f"- {line}" for line in lines or ["(no deployments)"])
    )


def reactivated_body(balance) -> str:
    return (
        f"Your balance is above zero again ({balance} credits). Deployments deleted at expiry are not restored; "
        "volumes still kept under your retain policy are no longer scheduled for deletion; snapshots taken at "
        "expiry keep their retention date."
    )


def idle_reason(evidence: dict) -> str:
    return (
        f"idle over the last {IDLE_WINDOW_HOURS} hours ({fmt_time(evidence['window'][0])} to "
        f"{fmt_time(evidence['window'][1])}): {evidence['cpu_core_hours']} core-hours of CPU "
        f"(under {IDLE_CPU_CORE_HOURS}) and {evidence['egress_gib']} GiB of egress (under {IDLE_EGRESS_GIB})"
    )


def idle_body(account: Account, dep: Deployment, reason: str) -> str:
    return (
        f"Your account is in its grace period and early idle deletion is enabled. Deployment {dep.name} "
        f"(namespace {dep.namespace}) was {reason}; it is being deleted now with {WORKLOAD_OBJECTS}. "
        + volume_policy_sentence(account)
    )


def retry_words() -> str:
    return f"retried every {RETRY_EVERY_MINUTES} minutes"


def expiry_cause(expired: list[dict]) -> dict | None:
    """Why a state changed when credits expired since the previous evaluation (``expired``: the
    ``grant_expiry`` entries, ``store.credits_expired_since``): the words ("promotional credits
    expired"), each grant with its amount and expiry, and a sentence. None when nothing expired."""
    if not expired:
        return None
    reasons = list(dict.fromkeys(e["reason"] for e in expired))
    words = " and ".join(reasons)
    grants = [
        {
            "grant_entry_id": e["grant_entry_id"],
            "expiry_entry_id": e["expiry_entry_id"],
            "amount": f"{e['amount']}",
            "expires_at": e["expires_at"],
            "kind": e["kind"],
            "reason": e["reason"],
        }
        for e in expired
    ]
    each = "; ".join(
        f"grant {g['grant_entry_id']}: {g['amount']} credits expired on {_when(g['expires_at'])}" for g in grants
    )
    return {"reason": words, "credits_expired": grants, "text": f"{words[:1].upper()}{words[1:]} ({each})."}


def _when(text: str | None) -> str:
    try:
        return fmt_time(datetime.fromisoformat(text)) if text else "an unrecorded time"
    except ValueError:
        return text
