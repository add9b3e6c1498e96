"""Dagster definitions of the lifecycle domain: ``lifecycle/account_lifecycle`` and its job.

* ``lifecycle/account_lifecycle`` (downstream of settlement and top-ups): evaluates every
  account at the run's clock (``billing/now`` tag, else the wall clock), persists its state in
  ``billing.account_lifecycle`` (the balances mart reads it) and acts on the cluster: routing off
  in grace, restored after a top-up, cleanup at expiry. An account whose cluster action failed
  (or that needs the cluster while none is configured) does not stop the others: what succeeded
  is recorded, and the check ``every_cluster_action_done`` fails naming the accounts.
* ``grace_period_job``: the lifecycle, then delivery of the notices it queued.
  ``grace_deadline_schedule`` (on by default) runs it every ``RETRY_EVERY_MINUTES`` (15) minutes, so a deadline (or the end
  of a volume retention period) that passes without any new data still acts.

Re-runnable at any time with the same result: transitions, notices and cluster actions are
keyed (see ``lifecycle.engine``).
"""

import dagster as dg

from billing_pipeline.core.asset_keys import (
    ACCOUNT_LIFECYCLE,
    AUTO_TOPUPS,
    GRANT_EXPIRY,
    LEDGER,
    NOTIFICATION_DELIVERIES,
)
from billing_pipeline.core.clock import CLOCK_TAG, run_clock
from billing_pipeline.core.errors import ConfigurationError
from billing_pipeline.core.ownership import BILLING_OWNERS
from billing_pipeline.core.partitions import latest_hour_of
from billing_pipeline.core.runs import JOB_TAGS
from billing_pipeline.lifecycle.actions import RETRY_EVERY_MINUTES
from billing_pipeline.lifecycle.engine import run_lifecycle
from billing_pipeline.resources.kubernetes import KubernetesResource
from billing_pipeline.resources.postgres import PostgresResource


@dg.asset(
    key=ACCOUNT_LIFECYCLE,
    deps=[latest_hour_of(LEDGER), GRANT_EXPIRY, AUTO_TOPUPS],
    group_name="lifecycle",
    kinds={"kubernetes", "postgres"},
    owners=BILLING_OWNERS,
    description="billing.account_lifecycle: each account's lifecycle state (healthy, low balance, grace period, "
    "expired), since when, its grace deadline, and the cluster actions taken (billing.lifecycle_events).",
    check_specs=[
        dg.AssetCheckSpec(
            "every_cluster_action_done",
            asset=ACCOUNT_LIFECYCLE,
            description="Every account's lifecycle step completed, cluster actions included.",
        )
    ],
)
def account_lifecycle(context: dg.AssetExecutionContext, postgres: PostgresResource, kubernetes: KubernetesResource):
    now = run_clock(context)
    dry_run = kubernetes.is_dry_run()

    def connect_cluster():
        # Called when an account first needs the cluster: an hour in which every account is quiet
        # (settled in one statement) never imports the Kubernetes client nor reads a kubeconfig.
        try:
            return kubernetes.cluster()
        except ConfigurationError as exc:
            # Decisions (states, notices, domains) do not need the cluster; an account that needs a
            # cluster action then fails with "no cluster configured", reported by the check.
            context.log.warning(str(exc))
            return None

    with postgres.connect(autocommit=True) as conn:
        report = run_lifecycle(conn, None, now, dry_run=dry_run, connect_cluster=connect_cluster)
    for a in report.accounts:
        for t in a.transitions:
            context.log.info(f"{a.account_id}: {t.from_state.value} -> {t.to_state.value} ({t.reason})")
        for action in a.actions:
            context.log.info(f"{a.account_id}: {action}")
    for error in report.errors:
        context.log.error(error)
    yield dg.MaterializeResult(
        metadata={
            "now": now.isoformat(),
            "dry_run": dry_run,
            # lifecycle events recorded: each transition and each cluster action
            "dagster/row_count": sum(len(a.transitions) + len(a.actions) for a in report.accounts),
            "accounts": len(report.accounts),
            "transitions": sum(len(a.transitions) for a in report.accounts),
            "cluster_actions": sum(len(a.actions) for a in report.accounts),
            "states": dg.MetadataValue.json({a.account_id: a.state for a in report.accounts}),
            "errors": dg.MetadataValue.json(report.errors),
        }
    )
    yield dg.AssetCheckResult(
        check_name="every_cluster_action_done",
        passed=not report.errors,
        severity=dg.AssetCheckSeverity.ERROR,
        description=None
        if not report.errors
        else (
            f"{len(report.errors)} account(s) not completed; what succeeded is recorded and the next run "
            "finishes the rest: " + "; ".join(report.errors)
        ),
    )


grace_period_job = dg.define_asset_job(
    "grace_period_job",
    selection=dg.AssetSelection.assets(account_lifecycle) | dg.AssetSelection.assets(NOTIFICATION_DELIVERIES),
    tags=JOB_TAGS,
    description="Account lifecycle (grace period, recovery, expiry cleanup), then delivery of its notices.",
)


# Status tells customers pending actions are "retried every N minutes": the same constant.
@dg.schedule(
    name="grace_deadline_schedule",
    job=grace_period_job,
    cron_schedule=f"*/{RETRY_EVERY_MINUTES} * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Acts on grace deadlines that pass without new data, and retries pending cluster actions. "
    "Skips, with the reason, while no Kubernetes cluster is configured.",
)
def grace_deadline_schedule(context: dg.ScheduleEvaluationContext, kubernetes: KubernetesResource):
    missing = kubernetes.missing_configuration()
    if missing:
        return dg.SkipReason(f"skipped: {missing}: no deadline can be acted on")
    at = context.scheduled_execution_time
    return dg.RunRequest(run_key=f"deadlines@{at.isoformat()}", tags={CLOCK_TAG: at.isoformat()})


defs = dg.Definitions(assets=[account_lifecycle], jobs=[grace_period_job], schedules=[grace_deadline_schedule])
