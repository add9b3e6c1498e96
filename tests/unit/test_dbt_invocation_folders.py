"""One folder per dbt invocation, seeded with the database's parse state, removed after success;
a failed invocation's folder is kept for a day (integration/test_dbt_parse_state.py checks that
dbt then parses only what changed)."""

from __future__ import annotations

import os
import time

import pytest

from billing_pipeline.transform import project
from billing_pipeline.transform.project import invocation_target, prune_invocation_folders


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
    assert target / "runs" == project.RUNS_DIR and target / "parse-state" == project.PARSE_STATE_DIR
    assert project.RUNS_DIR.is_absolute()  # dbt runs with the project folder as its working directory
