"""A run whose ERROR-severity check failed is tagged ``billing/checks=failed``.

Dagster marks such a run a success (a check that does not block leaves its steps green), while
``billing run`` treats it as failed (exit 1). The tag puts the CLI's verdict on the run, where
the UI shows it in the runs list and on the run's page: the launcher tags the runs it waits
for, and ``failed_checks_sensor`` (on) tags the runs the UI, the schedules and the sensors launch.
"""

import dagster as dg
from dagster._core.events import DagsterEventType

from billing_pipeline.core.runs import CHECKS_FAILED, CHECKS_TAG


def failed_error_checks(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """The run's failed ERROR-severity checks, as ``asset:check`` names (sorted)."""
    failed = set()
    for record in instance.get_records_for_run(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION).records:
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        if not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR:
            failed.add(f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}")
    return sorted(failed)


def tag_failed_checks(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """Tag the run ``billing/checks=failed`` if an ERROR check failed in it; returns those checks."""
    failed = failed_error_checks(instance, run_id)
    if failed:
        instance.add_run_tags(run_id, {CHECKS_TAG: CHECKS_FAILED})
    return failed


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    name="failed_checks_sensor",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Tags a successful run billing/checks=failed when one of its ERROR checks failed, as `billing run` "
    "counts it (exit 1). Launches nothing.",
)
def failed_checks_sensor(context: dg.RunStatusSensorContext):
    failed = tag_failed_checks(context.instance, context.dagster_run.run_id)
    if failed:
        return dg.SkipReason(
            f"run {context.dagster_run.run_id} tagged {CHECKS_TAG}={CHECKS_FAILED}: {', '.join(failed)}"
        )
    return dg.SkipReason(f"run {context.dagster_run.run_id}: no ERROR check failed")


defs = dg.Definitions(sensors=[failed_checks_sensor])
