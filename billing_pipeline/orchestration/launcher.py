"""Launching runs on the Dagster instance as the daemon would, and waiting for them.

``billing run`` and ``billing close-month`` use this, so their runs are ordinary runs of the code
location ``workspace.yaml`` names: they show under their jobs and in the asset partitions of the
web UI, beside the runs the daemon starts.

* A run is created from the code location, loaded in this process under the location name the
  workspace gives it (so the UI and the daemon recognise its origin).
* With a live daemon (a recent heartbeat of the run queue), the run is submitted to the queue.
  The queue lets one run of the ``billing/lane`` tag execute at a time (``db.dagster_instance``),
  so it never overlaps a run a sensor or schedule started.
* Without one, the run is executed here, by the same code a run worker uses, while this process
  holds the lane's PostgreSQL advisory lock, so two ``billing run`` never execute at once.

Either way the caller waits, and ``on_progress`` hears of each step as it starts and ends.
"""

from __future__ import annotations

import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
from dagster._core.definitions.selector import JobSubsetSelector
from dagster._core.events import DagsterEventType
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.storage.dagster_run import DagsterRunStatus
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget

from billing_pipeline.core.errors import BillingError
from billing_pipeline.core.runs import LANE_TAG, MONEY_LANE, origin_tags
from billing_pipeline.orchestration.run_checks import tag_failed_checks

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
# The code location's name in workspace.yaml: runs created here must carry it, or the daemon
# cannot launch them and the UI does not list them under their job.
LOCATION_NAME = "billing_pipeline"
DEFINITIONS_MODULE = "billing_pipeline.definitions"
DAEMON_HEARTBEAT_SECONDS = 90
QUEUE_WAIT_SECONDS = 1800
POLL_SECONDS = 0.5  # how often the run's progress is read back
FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
# What ``on_progress`` says of a step, by its event.
STEP_VERBS = {"STEP_START": "started", "STEP_SUCCESS": "done", "STEP_FAILURE": "FAILED"}


@dataclass
class RunOutcome:
    """What one run did, for summaries: its id, status, and failed steps and checks."""

    run_id: str
    job_name: str
    status: str
    seconds: float
    launched_by: str  # "queue" (the daemon) or "in_process"
    tags: dict = field(default_factory=dict)
    failed_steps: list[str] = field(default_factory=list)
    failed_checks: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return self.status == "SUCCESS"


def default_instance() -> dg.DagsterInstance:
    """The instance of ``DAGSTER_HOME``, else the demo's (``<state dir>/dagster_home``) if it exists.

    Opened from its folder (``db.dagster_instance.load_instance``): nothing is written to the
    environment, and the runs executed here use this instance object."""
    import os

    from billing_pipeline.core.errors import ConfigurationError
    from billing_pipeline.db.connection import state_dir
    from billing_pipeline.db.dagster_instance import load_instance

    home = os.environ.get("DAGSTER_HOME")
    if not home:
        home = state_dir() / "dagster_home"
        if not (home / "dagster.yaml").exists():
            raise ConfigurationError(
                "DAGSTER_HOME is not set: runs are recorded on a Dagster instance. Point it at the folder of the "
                "instance's dagster.yaml, or run `scripts/demo` once to create the demo's (./.billing/dagster_home)."
            )
    return load_instance(home)


def daemon_is_running(instance: dg.DagsterInstance) -> bool:
    """True when the run queue's daemon sent a heartbeat recently (it will dequeue our runs)."""
    heartbeat = instance.get_daemon_heartbeats().get("QUEUED_RUN_COORDINATOR")
    return heartbeat is not None and time.time() - heartbeat.timestamp <= DAEMON_HEARTBEAT_SECONDS


@contextmanager
def code_location(instance: dg.DagsterInstance) -> Iterator:
    """The pipeline's code location, loaded in this process under the workspace's location name."""
    origin = InProcessCodeLocationOrigin(
        loadable_target_origin=LoadableTargetOrigin(
            module_name=DEFINITIONS_MODULE, attribute="defs", working_directory=str(REPOSITORY_ROOT)
        ),
        location_name=LOCATION_NAME,
    )
    with WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget(origin)) as process_context:
        request = process_context.create_request_context()
        location = request.get_code_location(LOCATION_NAME)
        yield request, location


class Launcher:
    """Creates, launches and waits for runs; one per ``billing run`` / ``close-month``."""

    def __init__(
        self,
        instance: dg.DagsterInstance,
        workspace,
        location,
        *,
        lock_conn=None,
        on_progress: Callable[[str], None] | None = None,
    ) -> None:
        self.instance = instance
        self.workspace = workspace
        self.location = location
        self.lock_conn = lock_conn
        self.on_progress = on_progress or (lambda _message: None)
        (self.repository,) = location.get_repositories().values()

    def create_run(
        self, job_name: str, *, tags: Mapping[str, str], asset_selection: Iterable[dg.AssetKey] | None = None
    ):
        selection = frozenset(asset_selection) if asset_selection is not None else None
        remote_job = self.location.get_job(
            JobSubsetSelector(
                location_name=self.location.name,
                repository_name=self.repository.name,
                job_name=job_name,
                op_selection=None,
                asset_selection=selection,
                asset_check_selection=None,
            )
        )
        plan = self.location.get_execution_plan(
            remote_job, {}, step_keys_to_execute=None, known_state=None, instance=self.instance
        )
        return self.instance.create_run(
            job_name=job_name,
            run_id=None,
            run_config={},
            resolved_op_selection=remote_job.resolved_op_selection,
            step_keys_to_execute=plan.execution_plan_snapshot.step_keys_to_execute,
            op_selection=None,
            status=None,
            root_run_id=None,
            parent_run_id=None,
            # Launched from this process: the command line that asked for it, and by whom.
            tags={**remote_job.tags, **origin_tags(sys.argv), **tags},
            job_snapshot=remote_job.job_snapshot,
            execution_plan_snapshot=plan.execution_plan_snapshot,
            parent_job_snapshot=remote_job.parent_job_snapshot,
            remote_job_origin=remote_job.get_remote_origin(),
            job_code_origin=remote_job.get_python_origin(),
            asset_selection=selection,
            asset_check_selection=None,
            asset_graph=self.repository.asset_graph,
        )

    def run(self, job_name: str, *, tags: Mapping[str, str], asset_selection=None, label: str = "") -> RunOutcome:
        """Create the run, launch it (queue or here), wait for it, and say how it went."""
        run = self.create_run(job_name, tags=tags, asset_selection=asset_selection)
        started = time.monotonic()
        if daemon_is_running(self.instance):
            self.instance.submit_run(run.run_id, self.workspace)
            launched_by = "queue"
            self._wait(run.run_id, label)
        else:
            launched_by = "in_process"
            _restore_sigterm()
            with self._lane():
                # (step key, verb) per step's start and end, then None when the run has ended.
                progress: queue.SimpleQueue[tuple[str, str] | None] = queue.SimpleQueue()
                worker = threading.Thread(target=self._execute_here, args=(run.run_id, progress), daemon=True)
                worker.start()
                # This thread tells each step's progress as the worker hands it over (a slow
                # terminal never holds up the run). It waits without a timeout: under a faked
                # clock (scripts/test-dates) a timed wait may never end, and the wait for the
                # next step ends with the run anyway. Ctrl-C still interrupts it.
                telling = True
                while (step := progress.get()) is not None:
                    step_key, verb = step
                    if telling:
                        try:
                            self.on_progress(f"{label}{step_key} {verb}")
                        except OSError:  # a closed terminal: the run goes on, untold, in the lane
                            telling = False
                worker.join()
        return self._outcome(run.run_id, job_name, time.monotonic() - started, launched_by)

    @contextmanager
    def _lane(self) -> Iterator[None]:
        if self.lock_conn is None:
            yield
            return
        self.lock_conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (f"{LANE_TAG}:{MONEY_LANE}",))
        try:
            yield
        finally:
            self.lock_conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (f"{LANE_TAG}:{MONEY_LANE}",))

    def _execute_here(self, run_id: str, progress: queue.SimpleQueue) -> None:
        """Execute the run in this thread, as a run worker would, handing each step's start and
        end to ``progress`` as the execution yields them, and None when it ends: no reading back
        of the event log, which took CPU time (the interpreter's lock) from this thread every
        half second."""
        from dagster._grpc.impl import core_execute_run
        from dagster._utils.hosted_user_process import recon_job_from_origin

        try:
            run = self.instance.get_run_by_id(run_id)
            recon_job = recon_job_from_origin(run.job_code_origin)
            for event in core_execute_run(recon_job, run, self.instance, inject_env_vars=True):
                verb = STEP_VERBS.get(getattr(event, "event_type_value", None))
                if verb:
                    progress.put((event.step_key, verb))
        except Exception:
            pass  # Dagster has written the run's failure to its event log: _outcome reads it
        finally:
            progress.put(None)

    def _wait(self, run_id: str, label: str) -> None:
        """Wait for a queued run, reading its steps' progress back from the event log."""
        seen_steps: set[tuple[str, str]] = set()
        cursor = None
        deadline = time.monotonic() + QUEUE_WAIT_SECONDS
        while True:
            records = self.instance.get_records_for_run(
                run_id,
                cursor=cursor,
                of_type={DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE},
            )
            cursor = records.cursor
            for record in records.records:
                event = record.event_log_entry.dagster_event
                key = (event.step_key, event.event_type_value)
                if key not in seen_steps:
                    seen_steps.add(key)
                    self.on_progress(f"{label}{event.step_key} {STEP_VERBS[event.event_type_value]}")
            run = self.instance.get_run_by_id(run_id)
            if run.status in FINISHED:
                return
            if run.status == DagsterRunStatus.QUEUED and time.monotonic() > deadline:
                raise BillingError(
                    f"run {run_id} waited {QUEUE_WAIT_SECONDS} s in the run queue without starting: is "
                    "dagster-daemon running on this DAGSTER_HOME? The run stays queued; it starts when the daemon does."
                )
            time.sleep(POLL_SECONDS)

    def _outcome(self, run_id: str, job_name: str, seconds: float, launched_by: str) -> RunOutcome:
        run = self.instance.get_run_by_id(run_id)
        outcome = RunOutcome(
            run_id=run_id,
            job_name=job_name,
            status=run.status.value,
            seconds=seconds,
            launched_by=launched_by,
            tags=dict(run.tags),
        )
        for record in self.instance.get_records_for_run(
            run_id,
            of_type={
                DagsterEventType.STEP_FAILURE,
                DagsterEventType.RUN_FAILURE,
                DagsterEventType.ASSET_CHECK_EVALUATION,
            },
        ).records:
            event = record.event_log_entry.dagster_event
            if event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
                evaluation = event.event_specific_data
                if not evaluation.passed:
                    outcome.failed_checks.append(
                        {
                            "asset": evaluation.asset_key.to_user_string(),
                            "check": evaluation.check_name,
                            "severity": evaluation.severity.value,
                            "description": evaluation.description or "",
                        }
                    )
                continue
            if event.event_type == DagsterEventType.STEP_FAILURE:
                outcome.failed_steps.append(event.step_key)
            error = getattr(event.event_specific_data, "error", None)
            while error is not None and error.cause is not None:
                error = error.cause
            if error is not None:
                outcome.errors.append(_message(error))
            elif event.event_type == DagsterEventType.RUN_FAILURE and event.message:
                outcome.errors.append(event.message)  # e.g. the run could not be launched
        outcome.errors = list(dict.fromkeys(outcome.errors))
        if tag_failed_checks(self.instance, run_id):  # as failed_checks_sensor tags the UI's runs
            outcome.tags = dict(self.instance.get_run_by_id(run_id).tags)
        return outcome


def _restore_sigterm() -> None:
    """Give SIGTERM back its default action if a parent (nohup, a supervisor) ignored it.

    The run's log capture stops the ``tail`` processes it starts with SIGTERM; children inherit an
    ignored signal, and each capture then waits 30 s for them before giving up, per stream.
    """
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_IGN:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _message(error) -> str:
    """A serialized error's message without the ``module.Class: `` prefix Dagster adds."""
    text = error.message.strip()
    head, sep, rest = text.partition(f"{error.cls_name}: ")
    return rest if sep and " " not in head else text
