"""One rule for "balance -> state": machine.py owns it; SQL (alerts), dbt and the report ask it."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import jinja2

from billing_pipeline.lifecycle.machine import State, state_for_balance, state_sql

ROOT = Path(__file__).resolve().parents[2]


def test_the_python_form_on_the_edges():
    # The SQL form is checked against this one on a real server: tests/integration/test_lifecycle_rule_sql.py.
    assert state_for_balance(Decimal("0"), Decimal("10")) == State.GRACE_PERIOD
    assert state_for_balance(Decimal("-0.000001"), Decimal("10")) == State.GRACE_PERIOD
    assert state_for_balance(Decimal("0.000001"), Decimal("10")) == State.LOW_BALANCE
    assert state_for_balance(Decimal("10"), Decimal("10")) == State.LOW_BALANCE
    assert state_for_balance(Decimal("10.000001"), Decimal("10")) == State.HEALTHY


def test_the_dbt_macro_renders_the_machines_sql():
    text = (ROOT / "dbt_project/macros/lifecycle_state_for_balance.sql").read_text()
    rendered = jinja2.Environment().from_string(text + "{{ lifecycle_state_for_balance('b', 't') }}").render().strip()
    assert rendered == state_sql("b", "t")
    model = (ROOT / "dbt_project/models/intermediate/int_account_lifecycle_states.sql").read_text()
    assert "lifecycle_state_for_balance(" in model and "'low_balance'" not in model


def test_no_other_copy_of_the_rule():
    from billing_pipeline.alerts import balance

    assert state_sql("coalesce(c.balance, 0)", "a.low_balance_threshold") in balance._STATE
    copies = []
    for path in (ROOT / "billing_pipeline").rglob("*.py"):
        if path.name == "machine.py":
            continue
        src = path.read_text()
        if re.search(r"balance\s*<=\s*0", src) and re.search(r"low_balance", src):
            copies.append(str(path.relative_to(ROOT)))
    assert copies == []
