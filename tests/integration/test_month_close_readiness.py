"""A month is closed only when every billable hour of it is settled, or after a wait; before
that the schedule skips with the reason, the command refuses without --force, and a run launched
by hand (the UI) needs the force tag (issue 23; invoicing/readiness.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import dagster as dg
import psycopg
import pytest

from billing_pipeline.cli.main import main
from billing_pipeline.core.errors import ConfigurationError
from billing_pipeline.invoicing.months import parse_month
from billing_pipeline.invoicing.readiness import month_readiness
from billing_pipeline.resources.postgres import PostgresResource
from tests.support.month_end import create_platform, create_priced_usage_mart, mark_metric_hours

OCT = datetime(2026, 10, 1, tzinfo=UTC)
NOV = datetime(2026, 11, 1, tzinfo=UTC)
LATE = [NOV - timedelta(hours=2), NOV - timedelta(hours=1)]  # October's last two hours, incomplete
ACCOUNTS = {"acme": "dep-acme"}


@pytest.fixture
def october(db_url, monkeypatch, tmp_path):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.delenv("BILLING_MONTH_CLOSE_WAIT_HOURS", raising=False)
    with psycopg.connect(db_url) as conn:
        create_platform(conn, ACCOUNTS)
        create_priced_usage_mart(conn)
        mark_metric_hours(conn, "2026-10", incomplete=LATE)
    return db_url


def invoice_count(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM billing.invoices").fetchone()[0]


def test_readiness_waits_for_every_hour_or_the_wait(october, monkeypatch):
    with psycopg.connect(october) as conn:
        early = month_readiness(conn, OCT.date(), NOV + timedelta(hours=6))
        assert (early.ready, early.unsettled_hours, early.first_unsettled) == (False, 2, LATE[0])
        assert early.wait_until == NOV + timedelta(hours=72)
        assert early.reason == (
            "2 hour(s) of 2026-10 are not settled yet (the first: 2026-10-31T22:00Z, metrics missing or "
            "incomplete): the month closes once they are, or at 2026-11-04T00:00:00+00:00 "
            "(BILLING_MONTH_CLOSE_WAIT_HOURS=72 h after its end); an operator can close it now with "
            "`billing close-month 2026-10 --force` (or the run tag billing/force_close=true)"
        )
        assert not month_readiness(conn, OCT.date(), NOV + timedelta(hours=71, minutes=59)).ready
        assert month_readiness(conn, OCT.date(), NOV + timedelta(hours=72)).ready
        monkeypatch.setenv("BILLING_MONTH_CLOSE_WAIT_HOURS", "6")
        assert month_readiness(conn, OCT.date(), NOV + timedelta(hours=6)).ready
        monkeypatch.setenv("BILLING_MONTH_CLOSE_WAIT_HOURS", "three days")
        with pytest.raises(ConfigurationError, match="BILLING_MONTH_CLOSE_WAIT_HOURS='three days' is not a number"):
            month_readiness(conn, OCT.date(), NOV)
        monkeypatch.delenv("BILLING_MONTH_CLOSE_WAIT_HOURS")
        # Hours before the first billable hour are never billed, so they never hold a month back.
        monkeypatch.setenv("BILLING_FIRST_HOUR", "2026-10-31T23:00:00Z")
        late = month_readiness(conn, OCT.date(), NOV)
        assert (late.unsettled_hours, late.first_unsettled) == (1, LATE[1])
        mark_metric_hours(conn, "2026-10")  # every hour settled: ready as soon as the month ended
        assert month_readiness(conn, OCT.date(), NOV).reason == "every billable hour of 2026-10 is settled"


def test_close_month_refuses_before_ready_and_closes_with_force(october, capsys):
    code = main(["close-month", "2026-10", "--now", "2026-11-01T06:00:00Z"])
    _, err = capsys.readouterr()
    assert code == 2 and "Traceback" not in err
    assert "month 2026-10 is not ready to close: 2 hour(s) of 2026-10 are not settled yet" in err
    assert "`billing close-month 2026-10 --force`" in err
    assert invoice_count(october) == 0
    assert dg.DagsterInstance.get().get_runs_count() == 0  # refused before any run was launched

    code = main(["close-month", "2026-10", "--now", "2026-11-01T06:00:00Z", "--force", "--json"])
    out, _ = capsys.readouterr()
    summary = json.loads(out)
    assert code == 0 and summary["forced"] is True and summary["invoices_issued"] == 1
    assert summary["readiness"]["unsettled_hours"] == 2 and summary["readiness"]["ready"] is False
    (run,) = dg.DagsterInstance.get().get_runs()
    assert run.tags["billing/force_close"] == "true"

    # After the wait, no force is needed (and closing again issues nothing).
    code = main(["close-month", "2026-10", "--now", "2026-11-04T00:00:00Z"])
    out, _ = capsys.readouterr()
    assert code == 0 and "Nothing new: the month was already closed." in out


def test_a_run_launched_by_hand_needs_the_force_tag(october):
    from billing_pipeline.definitions import defs

    job = defs.resolve_job_def("monthly_invoice_job")
    instance = dg.DagsterInstance.get()
    clock = {"billing/now": (NOV + timedelta(hours=6)).isoformat()}
    refused = job.execute_in_process(partition_key="2026-10-01", instance=instance, tags=clock, raise_on_error=False)
    assert not refused.success and invoice_count(october) == 0
    (failure,) = [e for e in refused.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    # A dg.Failure: the UI shows the reason as the step's failure, without a stack trace.
    assert failure.step_failure_data.user_failure_data.description.startswith(
        "not closed: 2 hour(s) of 2026-10 are not settled yet (the first: 2026-10-31T22:00Z"
    )
    forced = job.execute_in_process(
        partition_key="2026-10-01", instance=instance, tags={**clock, "billing/force_close": "true"}
    )
    assert forced.success and invoice_count(october) == 1


def test_month_close_schedule_skips_with_the_reason_until_ready(october):
    from billing_pipeline.definitions import defs

    schedule = defs.get_schedule_def("month_close_schedule")
    assert schedule.cron_schedule == "25 * * * *" and schedule.job_name == "monthly_invoice_job"
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED

    def tick(at: datetime):
        context = dg.build_schedule_context(
            scheduled_execution_time=at,
            repository_def=defs.get_repository_def(),
            resources={"postgres": PostgresResource(database_url=october)},
        )
        return schedule.evaluate_tick(context)

    early = tick(NOV + timedelta(hours=6, minutes=25))
    assert early.run_requests == []
    assert early.skip_message.startswith("not closing yet: 2 hour(s) of 2026-10 are not settled yet")
    (request,) = tick(NOV + timedelta(hours=72, minutes=25)).run_requests  # the wait is over
    assert request.partition_key == "2026-10-01" and request.run_key == "month_close:2026-10-01"
    assert request.tags["billing/now"] == (NOV + timedelta(hours=72, minutes=25)).isoformat()
    assert "billing/force_close" not in request.tags

    with psycopg.connect(october) as conn:
        mark_metric_hours(conn, "2026-10")  # the late hours settled: ready at once
    (request,) = tick(NOV + timedelta(minutes=25)).run_requests
    assert request.partition_key == "2026-10-01"
    main(["close-month", "2026-10", "--now", "2026-11-01T01:00:00Z"])
    assert tick(NOV + timedelta(hours=1, minutes=25)).skip_message == "2026-10 is closed (1 invoice(s) issued)"
    assert parse_month("2026-10") == OCT.date()
