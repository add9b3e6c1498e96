"""Every stand-in mart in tests/support/ is generated from its dbt contract (tests/support/contracts.py):
no hand-written ``CREATE TABLE analytics...`` there, and the generated DDL carries every contract
column with its data type and NOT NULL. (Against the tables dbt really builds:
tests/integration/test_month_close_real_path.py.)"""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.contracts import STAND_INS, contract_columns, stand_in_ddl

SUPPORT = Path(__file__).resolve().parents[1] / "support"


def test_no_hand_written_analytics_table_in_tests_support():
    hand_written = [
        f"{path.name}: {m.group(0)}"
        for path in sorted(SUPPORT.glob("*.py"))
        if path.name != "contracts.py"
        for m in re.finditer(r"CREATE\s+TABLE[^(;]*analytics\.\w+", path.read_text(), re.IGNORECASE)
    ]
    assert hand_written == []


def test_the_generated_stand_ins_carry_each_contract_column_as_declared():
    for model in STAND_INS:
        ddl = stand_in_ddl(model)
        body = ddl.split("(\n", 1)[1].split("\n)", 1)[0].splitlines()
        declared = [line.strip().split(" ", 1)[0] for line in body]
        assert declared == [c.name for c in contract_columns(model)], model
        for column, line in zip(contract_columns(model), body, strict=True):
            assert line.strip().startswith(f"{column.name} {column.data_type}"), line
            assert ("NOT NULL" in line) == column.not_null, line
    assert "is_covered_by_rental boolean NOT NULL" in stand_in_ddl("fct_priced_usage")
