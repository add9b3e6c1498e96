"""Early idle deletion (``early_idle_deletion``, only during grace): an idle deployment is cleaned
up through the one cleanup path before the deadline, with its reason recorded and told.

"Idle" is ``machine.is_idle`` over the ``IDLE_WINDOW_HOURS`` complete hours before now; without
every hour of that window ingested complete, nothing is idle (we cannot know).
"""

from __future__ import annotations

from datetime import timedelta

from billing_pipeline.lifecycle import notices, store
from billing_pipeline.lifecycle.cleanup import open_cleanup
from billing_pipeline.lifecycle.machine import IDLE_WINDOW_HOURS, is_idle
from billing_pipeline.lifecycle.store import Account, Deployment


def idle_deployments(lc, account: Account) -> list[tuple[Deployment, dict]]:
    end = lc.now.replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(hours=IDLE_WINDOW_HOURS)
    if store.complete_hours(lc.conn, start, end) < IDLE_WINDOW_HOURS:
        return []
    return [
        (Deployment(*r[:4]), {"window": [start, end], "cpu_core_hours": r[4], "egress_gib": r[5]})
        for r in store.idle_usage(lc.conn, account.id, start, end)
        if is_idle(r[4], r[5])
    ]


def delete_idle(lc, account: Account, episode: int, outcome) -> None:
    for dep, evidence in idle_deployments(lc, account):
        reason = notices.idle_reason(evidence)
        with lc.conn.transaction():
            open_cleanup(lc, account, dep, "idle", episode)
            lc.event(
                key=f"cleanup:{dep.id}:idle_reason",
                account_id=account.id,
                deployment_id=dep.id,
                kind="cleanup",
                action="early_idle_deletion",
                outcome="done",
                target={"namespace": dep.namespace, "deployment": dep.name},
                detail={"reason": reason, **evidence},
            )
            lc.notify(
                account,
                f"lifecycle:{account.id}:idle:{dep.id}",
                "idle_deletion",
                f"{account.name}: idle deployment {dep.name} deleted early",
                notices.idle_body(account, dep, reason),
                {"deployment_id": dep.id, "reason": reason},
            )
        outcome.actions.append(f"early deletion of idle deployment {dep.namespace}/{dep.name}")
