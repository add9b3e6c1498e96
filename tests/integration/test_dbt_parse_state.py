"""dbt keeps its parse state between hourly runs, and its target folder stays small.

The hour window reaches dbt through the environment, not ``--vars``: dbt hashes its vars into
the parse state, so a new window in ``--vars`` made it re-parse the whole project on every run
(seconds per run, more than the models' own work at small scale).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from billing_pipeline.transform import project
from billing_pipeline.transform.assets import window_env
from billing_pipeline.transform.project import (
    dbt_environment,
    invocation_target,
    temporary_environment,
)
from billing_pipeline.transform.resources import dbt_resource

UTC = UTC
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
