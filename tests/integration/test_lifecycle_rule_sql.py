"""One rule for "balance -> state": the SQL form machine.py hands to the alerts and dbt gives the
same state as the Python form on every edge, evaluated by a real PostgreSQL server (the pure
parts of the rule: tests/unit/test_lifecycle_rule.py)."""

from __future__ import annotations

import itertools
from decimal import Decimal

import psycopg

from billing_pipeline.lifecycle.machine import state_for_balance, state_sql
from tests.support.databases import server_url

BALANCES = [Decimal(x) for x in ("-5", "-0.000001", "0", "0.000001", "9.999999", "10", "10.000001", "1000")]
THRESHOLDS = [Decimal(x) for x in ("0", "10", "20")]


def test_python_and_sql_forms_agree_on_every_edge():
    with psycopg.connect(server_url("postgres")) as conn:
        for b, t in itertools.product(BALANCES, THRESHOLDS):
            sql = conn.execute(f"SELECT {state_sql('%(b)s::numeric', '%(t)s::numeric')}", {"b": b, "t": t}).fetchone()
            assert sql[0] == state_for_balance(b, t).value, (b, t)
