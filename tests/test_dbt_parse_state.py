"""dbt keeps its parse state between hourly runs, and its target folder stays small.

The hour window reaches dbt through the environment, not ``--vars``: dbt hashes its vars into
the parse state, so a new window in ``--vars`` made it re-parse the whole project on every run
(seconds per run, more than the models' own work at small scale).
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timedelta, timezone

import pytest

from billing_pipeline.transform import project
from billing_pipeline.transform.assets import window_env
from billing_pipeline.transform.project import (
    dbt_environment,
    invocation_target,
    prune_invocation_folders,
    temporary_environment,
)
from billing_pipeline.transform.resources import dbt_resource

UTC = timezone.utc
HOUR = datetime(2025, 3, 2, 5, tzinfo=UTC)


def _parse_events(url: str, hour: datetime) -> list[str]:
    """Names of the dbt events of one ``dbt parse`` for ``hour``, run the way the assets run dbt."""
    window = temporary_environment(window_env(hour, hour + timedelta(hours=1)))
    with dbt_environment(url), window, invocation_target(url) as target:
        invocation = dbt_resource().cli(["parse"], target_path=target)
        names = [event.raw_event["info"]["name"] for event in invocation.stream_raw_events()]
        invocation.wait()
    return names


def test_a_new_hour_does_not_make_dbt_parse_the_project_again(db_url):
    first = _parse_events(db_url, HOUR)
    # No parse state for this database yet (the shipped one was parsed for another connection).
    assert "UnableToPartialParse" in first
    second = _parse_events(db_url, HOUR + timedelta(hours=1))
    third = _parse_events(db_url, HOUR + timedelta(hours=7))
    assert "UnableToPartialParse" not in second
    assert "UnableToPartialParse" not in third
    assert project._parse_state_file(db_url).exists()


def test_the_window_in_vars_would_force_a_full_parse(db_url):
    """The reason for the environment: the same call with the window in --vars re-parses."""
    _parse_events(db_url, HOUR)
    with dbt_environment(db_url), invocation_target(db_url) as target:
        vars_ = {"min_hour": HOUR.isoformat(), "max_hour": (HOUR + timedelta(hours=1)).isoformat()}
        invocation = dbt_resource().cli(["parse", "--vars", json.dumps(vars_)], target_path=target)
        names = [event.raw_event["info"]["name"] for event in invocation.stream_raw_events()]
        invocation.wait()
    assert "UnableToPartialParse" in names


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    runs, state = tmp_path / "runs", tmp_path / "parse-state"
    monkeypatch.setattr(project, "RUNS_DIR", runs)
    monkeypatch.setattr(project, "PARSE_STATE_DIR", state)
    return runs


URL = "postgresql://postgres@127.0.0.1:5432/some_db"


def test_a_successful_invocation_leaves_only_its_parse_state(runs_dir):
    with invocation_target(URL) as target:
        (target / "run_results.json").write_text("{}")
        (target / project.PARTIAL_PARSE_FILE).write_bytes(b"state-1")
    assert list(runs_dir.iterdir()) == []
    assert project._parse_state_file(URL).read_bytes() == b"state-1"
    # The next invocation starts from it.
    with invocation_target(URL) as target:
        assert (target / project.PARTIAL_PARSE_FILE).read_bytes() == b"state-1"
    # Another database keeps its own.
    with invocation_target(URL.replace("some_db", "other_db")) as target:
        assert not (target / project.PARTIAL_PARSE_FILE).exists()


def test_a_failed_invocation_keeps_its_folder_for_a_day(runs_dir):
    with pytest.raises(RuntimeError), invocation_target(URL) as target:
        (target / "dbt.log").write_text("what went wrong")
        (target / project.PARTIAL_PARSE_FILE).write_bytes(b"half-done")
        raise RuntimeError("dbt failed")
    assert [p.name for p in runs_dir.iterdir()] == [target.name]
    assert not project._parse_state_file(URL).exists()  # a failed run's parse state is not trusted
    assert prune_invocation_folders() == 0  # younger than a day
    old = time.time() - project.KEEP_FAILED_SECONDS - 60
    os.utime(target, (old, old))
    assert prune_invocation_folders() == 1
    assert list(runs_dir.iterdir()) == []


def test_the_shipped_parse_state_lives_beside_the_manifest():
    target = project.DBT_PROJECT_DIR / "target"
    assert project.RUNS_DIR == target / "runs" and project.PARSE_STATE_DIR == target / "parse-state"
    assert project.RUNS_DIR.is_absolute()  # dbt runs with the project folder as its working directory
