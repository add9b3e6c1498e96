"""Dagster definitions of the lifecycle domain: ``grace_period_job``, its sensor and schedule.

* ``grace_period_job`` evaluates every account at the run's clock (``billing/now`` tag, set by
  ``billing run --now`` and by the schedule; else the wall clock) and acts on the cluster.
* ``balance_change_lifecycle_sensor`` launches it when a balance changes (``billing.credits``),
  with the newest balance change as ``run_key``: a re-evaluation never double-launches.
* ``grace_deadline_schedule`` launches it every 15 minutes, so a deadline (or the end of a
  volume retention period) that passes without any new data still acts.

The job is re-runnable at any time with the same result: transitions, notices and cluster
actions are keyed (see ``lifecycle.engine``).
"""

from typing import Optional

import dagster as dg

from billing_pipeline.errors import BillingError, ConfigurationError
from billing_pipeline.lifecycle.engine import run_lifecycle
from billing_pipeline.orchestration.clock import CLOCK_TAG, parse_clock, run_clock
from billing_pipeline.resources.kubernetes import KubernetesResource
from billing_pipeline.resources.postgres import PostgresResource


class LifecycleConfig(dg.Config):
    now: Optional[str] = None  # ISO clock; default the run's billing/now tag, else the wall clock
    account_id: Optional[str] = None  # evaluate one account only


@dg.op(description="Evaluate every account's lifecycle at the run's clock and act on the cluster.")
def evaluate_lifecycle(context: dg.OpExecutionContext, config: LifecycleConfig, postgres: PostgresResource,
                       kubernetes: KubernetesResource) -> dg.Output:
    now = parse_clock(config.now) if config.now else run_clock(context)
    dry_run = kubernetes.is_dry_run()
    try:
        cluster = kubernetes.cluster()
    except ConfigurationError as exc:
        # Decisions (states, notices, domains) do not need the cluster; an account that needs a
        # cluster action then fails with "no cluster configured", and the run fails with it.
        context.log.warning(str(exc))
        cluster = None
    with postgres.connect(autocommit=True) as conn:
        report = run_lifecycle(conn, cluster, now, dry_run=dry_run,
                               account_ids=[config.account_id] if config.account_id else None)
    for a in report.accounts:
        for t in a.transitions:
            context.log.info(f"{a.account_id}: {t.from_state.value} -> {t.to_state.value} ({t.reason})")
        for action in a.actions:
            context.log.info(f"{a.account_id}: {action}")
    if report.errors:
        raise BillingError(
            f"lifecycle at {now.isoformat()}: {len(report.errors)} account(s) could not be completed; "
            "what succeeded is recorded, re-run grace_period_job to finish:\n" + "\n".join(report.errors))
    return dg.Output(None, metadata={
        "now": now.isoformat(), "dry_run": dry_run, "accounts": len(report.accounts),
        "transitions": sum(len(a.transitions) for a in report.accounts),
        "cluster_actions": sum(len(a.actions) for a in report.accounts),
        "states": dg.MetadataValue.json({a.account_id: a.state for a in report.accounts}),
    })


@dg.job(description="Account lifecycle (contract section 6): grace period, recovery, expiry cleanup.",
        tags={"billing/domain": "lifecycle"})
def grace_period_job():
    evaluate_lifecycle()


@dg.sensor(job=grace_period_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Launches grace_period_job when an account's balance changes.")
def balance_change_lifecycle_sensor(context: dg.SensorEvaluationContext, postgres: PostgresResource):
    with postgres.connect() as conn:
        newest = conn.execute("SELECT max(updated_at) FROM billing.credits").fetchone()[0]
    if newest is None:
        return dg.SkipReason("no balance yet")
    cursor = newest.isoformat()
    if context.cursor == cursor:
        return dg.SkipReason(f"no balance change since {cursor}")
    context.update_cursor(cursor)
    return dg.RunRequest(run_key=f"balances@{cursor}")


@dg.schedule(job=grace_period_job, cron_schedule="*/15 * * * *", execution_timezone="UTC",
             default_status=dg.DefaultScheduleStatus.RUNNING,
             description="Acts on deadlines that pass without new data.")
def grace_deadline_schedule(context: dg.ScheduleEvaluationContext):
    at = context.scheduled_execution_time
    return dg.RunRequest(run_key=f"deadlines@{at.isoformat()}", tags={CLOCK_TAG: at.isoformat()})


# The persisted states, written by grace_period_job; the dbt balances mart reads them.
account_lifecycle = dg.AssetSpec(
    key=dg.AssetKey(["lifecycle", "account_lifecycle"]),
    group_name="lifecycle",
    description="billing.account_lifecycle: each account's lifecycle state, since when, and its grace deadline.",
    kinds={"postgres"},
)

defs = dg.Definitions(assets=[account_lifecycle], jobs=[grace_period_job], sensors=[balance_change_lifecycle_sensor],
                      schedules=[grace_deadline_schedule])
