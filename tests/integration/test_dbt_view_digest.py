"""The project's view materialization (dbt_project/macros/materializations/view.sql): a view is
re-created only when its definition would change, seen from PostgreSQL's catalog (a re-created
view is a new relation, with a new oid)."""

from __future__ import annotations

import re

import psycopg

from tests.support import dbt as d

ACCOUNTS = "analytics_staging.stg_platform__accounts"
DEPLOYMENTS = "analytics_staging.stg_platform__deployments"
SELECT = ["--select", "stg_platform__accounts", "stg_platform__deployments"]


def run(db_url: str, tmp_path, *extra: str) -> d.DbtRun:
    """``dbt run`` of the two views (their data tests need models this test does not build)."""
    return d.run_dbt(db_url, ["run", *SELECT, *extra], tmp_path)


def execute(db_url: str, statement: str) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute(statement)


def views(db_url: str) -> dict[str, tuple[int, str | None]]:
    """Each view's oid and comment (its digest)."""
    rows = d.query(
        db_url,
        "SELECT c.oid::regclass::text, c.oid::int, obj_description(c.oid, 'pg_class') FROM pg_class c "
        "WHERE c.oid = ANY(ARRAY[to_regclass(%s), to_regclass(%s)]) AND c.relkind = 'v'",
        (ACCOUNTS, DEPLOYMENTS),
    )
    return {name: (oid, comment) for name, oid, comment in rows}


def test_a_view_is_recreated_only_when_its_definition_would_change(db_url, tmp_path):
    run(db_url, tmp_path)
    first = views(db_url)
    assert set(first) == {ACCOUNTS, DEPLOYMENTS}
    assert all(re.fullmatch(r"[0-9a-f]{32}", comment) for _oid, comment in first.values())
    assert first[ACCOUNTS][1] != first[DEPLOYMENTS][1]  # each view's own digest

    # The next build leaves both as they are, and says so by its check.
    again = run(db_url, tmp_path)
    assert views(db_url) == first
    assert again.output.count("[SELECT 1 in") == 2, again.output[-3000:]

    # A column added to the source one of them reads: only that one is rebuilt, with a new digest.
    execute(db_url, "ALTER TABLE billing.accounts ADD COLUMN note text")
    run(db_url, tmp_path)
    changed = views(db_url)
    assert changed[DEPLOYMENTS] == first[DEPLOYMENTS]
    assert changed[ACCOUNTS][0] != first[ACCOUNTS][0] and changed[ACCOUNTS][1] != first[ACCOUNTS][1]

    # A view dropped behind dbt's back, or carrying a comment set by hand, is rebuilt.
    execute(db_url, f"DROP VIEW {DEPLOYMENTS}")
    execute(db_url, f"COMMENT ON VIEW {ACCOUNTS} IS 'set by hand'")
    run(db_url, tmp_path)
    rebuilt = views(db_url)
    assert rebuilt[DEPLOYMENTS][1] == first[DEPLOYMENTS][1]  # the same definition as before
    assert rebuilt[ACCOUNTS][0] != changed[ACCOUNTS][0] and rebuilt[ACCOUNTS][1] == changed[ACCOUNTS][1]

    # A full refresh rebuilds every view.
    run(db_url, tmp_path, "--full-refresh")
    refreshed = views(db_url)
    assert all(refreshed[v][0] != rebuilt[v][0] for v in refreshed)
    assert {v: c for v, (_o, c) in refreshed.items()} == {v: c for v, (_o, c) in rebuilt.items()}


def test_an_unchanged_view_still_gets_its_grants_back(db_url, tmp_path):
    # fct_unbilled_usage is a view with grants (the analysts' role): a build that leaves the view
    # alone still re-grants, as dbt's own materialization does on every build.
    view = "analytics.fct_unbilled_usage"

    def state():
        (row,) = d.query(
            db_url,
            "SELECT to_regclass(%s)::oid::int, has_table_privilege('billing_analyst', %s, 'SELECT')",
            (view, view),
        )
        return row

    d.run_dbt(db_url, ["run", "--select", "+fct_unbilled_usage"], tmp_path)
    oid, granted = state()
    assert granted
    execute(db_url, f"REVOKE SELECT ON {view} FROM billing_analyst")
    assert state() == (oid, False)
    d.run_dbt(db_url, ["run", "--select", "fct_unbilled_usage"], tmp_path)
    assert state() == (oid, True)  # the same view, granted again
