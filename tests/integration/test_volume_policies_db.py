"""The one list of volume policies on PostgreSQL and in dbt: a migrated database's CHECKs hold
exactly ``VOLUME_POLICIES``, and the dbt staging test passes an account under each of them and
takes its values from the project var (a narrower ``--vars`` list makes it fail)."""

from __future__ import annotations

import re

import psycopg
import pytest

from billing_pipeline.core.volume_policies import VOLUME_POLICIES
from tests.support import dbt as d

TEST_NAME = "accepted_values_stg_platform__accounts_volume_policy"


def _check_values(url: str) -> dict[str, tuple]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT conrelid::regclass::text, pg_get_constraintdef(oid), obj_description(oid, 'pg_constraint') "
            "FROM pg_constraint WHERE conname IN ('accounts_volume_policy_check', "
            "'lifecycle_cleanups_volume_policy_check') ORDER BY 1"
        ).fetchall()
    return {
        table: (tuple(re.findall(r"'([a-z_]+)'::text", definition)), comment) for table, definition, comment in rows
    }


def test_the_migrated_checks_hold_exactly_the_list(db_url):
    source = "values from the dbt project var volume_policies (billing_pipeline.core.volume_policies)"
    assert _check_values(db_url) == {
        "billing.accounts": (VOLUME_POLICIES, source),
        "billing.lifecycle_cleanups": (VOLUME_POLICIES, source),
    }
    with psycopg.connect(db_url) as conn, pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("INSERT INTO billing.accounts (id, name, volume_policy) VALUES ('x', 'X', 'archive')")


def test_the_staging_test_accepts_every_listed_policy_and_reads_the_var(db_url, tmp_path):
    with psycopg.connect(db_url) as conn:
        for policy in VOLUME_POLICIES:
            conn.execute(
                "INSERT INTO billing.accounts (id, name, volume_policy) VALUES (%s, %s, %s)",
                (f"acct-{policy}", policy, policy),
            )
    # cautious: only the model's own tests, not the relationships of models not built here.
    select = ["build", "--select", "stg_platform__accounts", "--indirect-selection", "cautious"]
    select += d.EXCLUDE_UNIT_TESTS
    ok = d.run_dbt(db_url, select, tmp_path / "ok")
    assert re.search(rf"PASS {TEST_NAME}\b", ok.output), ok.output[-3000:]
    # Without the last policy in the var, the same test finds that account: the values are the var's.
    narrower = {"volume_policies": list(VOLUME_POLICIES[:-1])}
    failed = d.run_dbt(db_url, select, tmp_path / "narrow", vars=narrower, check=False)
    assert not failed.ok
    assert re.search(rf"FAIL 1 {TEST_NAME}\b", failed.output), failed.output[-3000:]
