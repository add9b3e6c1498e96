"""dbt in the run's process (transform/in_process.py): the same Dagster events and rows as a dbt
subprocess; the project's parse state serves every database (no parse in a process while it
is current), else the project is parsed once per process and database, not once per call."""

from __future__ import annotations

import shutil

import dagster as dg
import dbt.cli.main

from billing_pipeline.core.hours import Hour
from billing_pipeline.resources import PostgresResource
from billing_pipeline.transform import in_process
from billing_pipeline.transform.assets import dbt_ledger_models, dbt_usage_models
from billing_pipeline.transform.project import dbt_executable, dbt_project
from billing_pipeline.transform.resources import BillingDbtCliResource
from tests.integration.test_dbt_models import HOURS, seed_scenario
from tests.support import dbt as d


def _materialize(db_url: str, hour, *, in_process_: bool) -> dg.ExecuteInProcessResult:
    dbt = BillingDbtCliResource(project_dir=dbt_project, dbt_executable=dbt_executable(), in_process=in_process_)
    return dg.materialize(
        [dbt_usage_models, dbt_ledger_models],
        partition_key=Hour(hour).key,
        resources={"dbt": dbt, "postgres": PostgresResource(database_url=db_url)},
    )


def _what_it_reported(result: dg.ExecuteInProcessResult) -> dict:
    materialized = {}
    for event in result.get_asset_materialization_events():
        metadata = event.materialization.metadata
        materialized[event.asset_key] = {
            "unique_id": metadata["unique_id"].value,
            "timed": "Execution Duration" in metadata,
        }
    checks = {
        (e.asset_check_key.asset_key, e.asset_check_key.name): e.passed
        for e in (ev.event_specific_data for ev in result.all_events if ev.event_type_value == "ASSET_CHECK_EVALUATION")
    }
    return {"materialized": materialized, "checks": checks}


def _marts(db_url: str) -> dict:
    return {
        m: sorted(d.query(db_url, f"SELECT * FROM analytics.{m}"), key=repr)
        for m in ("fct_priced_usage", "fct_usage_charges", "fct_usage_reconciliation", "fct_account_balances")
    }


def test_in_process_dbt_reports_and_builds_what_the_subprocess_does(db_url):
    seed_scenario(db_url)
    subprocess_run = _materialize(db_url, HOURS[0], in_process_=False)
    subprocess_rows = _marts(db_url)
    in_process_run = _materialize(db_url, HOURS[0], in_process_=True)

    reported = _what_it_reported(in_process_run)
    assert reported == _what_it_reported(subprocess_run)
    # The hourly models (the month-end marts build in the monthly job, dbt_invoicing_models).
    assert len(reported["materialized"]) >= 25 and all(m["timed"] for m in reported["materialized"].values())
    assert len(reported["checks"]) >= 50 and all(reported["checks"].values())
    assert _marts(db_url) == subprocess_rows
    assert len(subprocess_rows["fct_priced_usage"]) > 0


def test_a_process_never_parses_when_the_projects_parse_state_is_current(db_url, monkeypatch):
    seed_scenario(db_url)
    calls = []
    invoke = dbt.cli.main.dbtRunner.invoke

    def counting(self, args, **kwargs):
        calls.append(args[0])
        return invoke(self, args, **kwargs)

    monkeypatch.setattr(dbt.cli.main.dbtRunner, "invoke", counting)
    monkeypatch.setattr(in_process, "_PARSED", {})  # a fresh process
    for hour in HOURS[:3]:
        assert _materialize(db_url, hour, in_process_=True).success
    # Three hours, two dbt steps each: six builds and no parse, on a database this process (and
    # this machine) never saw: the project's parse state serves every database.
    assert calls.count("build") == 6
    assert calls.count("parse") == 0
    assert len(d.query(db_url, "SELECT DISTINCT hour FROM analytics.fct_usage_charges")) == 3


def test_a_process_parses_the_project_once_per_database(db_url, monkeypatch, tmp_path):
    """When the project's parse state is stale (a model changed after it), each database is parsed
    once per process, not once per call."""
    seed_scenario(db_url)
    # The process' key holds the manifest's mtime; another test process may rewrite the shared
    # target/manifest.json meanwhile (a real project change would re-parse too). Hold it still.
    manifest = tmp_path / "manifest.json"
    shutil.copy2(in_process.ensure_manifest(), manifest)
    monkeypatch.setattr(in_process, "ensure_manifest", lambda: manifest)
    calls = []
    invoke = dbt.cli.main.dbtRunner.invoke

    def counting(self, args, **kwargs):
        calls.append(args[0])
        return invoke(self, args, **kwargs)

    monkeypatch.setattr(dbt.cli.main.dbtRunner, "invoke", counting)
    monkeypatch.setattr(in_process, "_PARSED", {})
    monkeypatch.setattr(in_process, "sources_newer_than", lambda _path: True)  # a model changed since
    for hour in HOURS[:2]:
        assert _materialize(db_url, hour, in_process_=True).success
    assert calls.count("build") == 4
    assert calls.count("parse") == 1


def _comparable(node) -> dict:
    data = node.to_dict()
    data.pop("created_at", None)
    return data


def test_the_projects_parse_state_pointed_at_a_database_is_what_a_parse_for_it_gives(db_url):
    """Node for node (every field but the parse time), models, tests, seeds, sources and unit
    tests: the manifest loaded from the project's state and pointed at this database equals dbt's
    own parse with this database's connection."""
    from dbt.cli.main import dbtRunner

    from billing_pipeline.db.connection import dbt_target
    from billing_pipeline.transform.project import dbt_environment, invocation_target

    database = str(dbt_target(db_url)["dbname"])
    with dbt_environment(db_url), invocation_target(db_url) as target:
        loaded = in_process.project_manifest(database)
        parsed = dbtRunner().invoke(["parse", "--quiet", *in_process._paths(target)]).result
    assert loaded is not None
    for section in ("nodes", "sources", "unit_tests", "macros"):
        ours, theirs = getattr(loaded, section), getattr(parsed, section)
        assert set(ours) == set(theirs), section
        assert {k: _comparable(v) for k, v in ours.items()} == {k: _comparable(v) for k, v in theirs.items()}, section
    assert {n.database for n in loaded.nodes.values() if n.database} == {database}
    assert loaded.child_map == parsed.child_map
