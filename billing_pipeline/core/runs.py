"""How the pipeline's Dagster runs are tagged, so the run queue can keep them apart.

Every job that writes billing state carries ``billing/lane: money``. The instance's run queue
(``db.dagster_instance``) allows one run of that lane at a time, so a run the daemon starts (a
sensor, a schedule) and a run ``billing run`` starts never execute at once: the later one waits
in the queue. ``billing run`` without a daemon takes the same lane through a PostgreSQL advisory
lock (``orchestration.launcher``).
"""

LANE_TAG = "billing/lane"
MONEY_LANE = "money"

JOB_TAGS = {LANE_TAG: MONEY_LANE}

# A run whose ERROR-severity asset check failed: Dagster still shows the run as a success (the
# check did not block a step), while ``billing run`` exits 1 for it. The tag says it on the run
# (orchestration/run_checks.py sets it, for runs of the UI, the daemon and the CLI alike).
CHECKS_TAG = "billing/checks"
CHECKS_FAILED = "failed"

# Where a run came from, for runs the CLI launches (the UI shows the ``user`` tag as who launched
# it, instead of "Manually launched").
ORIGIN_TAG = "billing/origin"
COMMAND_TAG = "billing/command"
USER_TAG = "user"
MAX_COMMAND_LENGTH = 200


def origin_tags(argv: list[str], user: str | None = None) -> dict[str, str]:
    """The tags of a run launched by the command line ``argv`` (``sys.argv``), by ``user``: origin
    ``cli`` for the ``billing`` console script, ``script`` for another program (the demo)."""
    import getpass
    import shlex
    from pathlib import Path

    if user is None:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):  # no login name and no passwd entry (some containers)
            user = "unknown"
    path = Path(argv[0]) if argv else Path("billing")
    # ``python -m devkit.demo`` runs as ``.../devkit/demo/__main__.py``: name the module.
    program = (
        ["python", "-m", f"{path.parent.parent.name}.{path.parent.name}"] if path.name == "__main__.py" else [path.name]
    )
    command = shlex.join([*program, *argv[1:]])
    if len(command) > MAX_COMMAND_LENGTH:
        command = command[: MAX_COMMAND_LENGTH - 1] + "…"
    origin = "cli" if program == ["billing"] else "script"
    via = "billing CLI" if origin == "cli" else program[-1]
    return {ORIGIN_TAG: origin, USER_TAG: f"{user} ({via})", COMMAND_TAG: command}
