"""Stand-in marts generated from the dbt contracts, so a stand-in cannot drift from its mart.

Tests that do not run dbt (deduction, month-end, alerts) still need ``analytics.fct_*`` tables.
Their DDL is built here from ``dbt_project/models/marts/_marts__models.yml``: every column of the
contract, in its order, with its ``data_type`` and its ``not_null`` constraint, exactly as dbt
creates the enforced contract. Only what a contract cannot say is added per stand-in (``STAND_INS``):

* a default for a NOT NULL column that hand-made rows may leave out, the value a plain row has
  (``coverage = 'charged'``, not covered, not an exception);
* ``list_amount`` computed as the contract describes it (quantity x unit_price);
* indexes the tests' statements rely on.

``tests/integration/test_month_close_real_path.py`` holds each stand-in against the mart dbt
really builds (names, types, nullability, order), and ``tests/unit/test_stand_in_contracts.py``
refuses a hand-written ``CREATE TABLE analytics...`` in ``tests/support/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import yaml

MARTS_YML = Path(__file__).resolve().parents[2] / "dbt_project" / "models" / "marts" / "_marts__models.yml"


@dataclass(frozen=True)
class Column:
    name: str
    data_type: str
    not_null: bool


@dataclass(frozen=True)
class StandIn:
    defaults: dict[str, str] = field(default_factory=dict)  # column -> SQL default expression
    generated: dict[str, str] = field(default_factory=dict)  # column -> SQL expression (STORED)
    indexes: tuple[str, ...] = ()  # "(hour)" or "UNIQUE (account_id)"


STAND_INS = {
    "fct_priced_usage": StandIn(
        defaults={
            "coverage": "'charged'",
            "is_covered_by_rental": "false",
            "is_reconciliation_exception": "false",
            "basis": "'usage'",
            "pricing_config_id": "'stand-in'",
            "is_estimate": "false",
        },
        generated={"list_amount": "quantity * unit_price"},
        indexes=("(hour)",),
    ),
    "fct_usage_charges": StandIn(
        defaults={"covered_amount": "0", "is_estimate": "false"},
        indexes=("(hour)",),
    ),
    "fct_account_balances": StandIn(indexes=("UNIQUE (account_id)",)),
}


@cache
def contract_columns(model: str) -> tuple[Column, ...]:
    """The enforced contract of ``model``: its columns with their data types and NOT NULLs."""
    models = {m["name"]: m for m in yaml.safe_load(MARTS_YML.read_text())["models"]}
    if model not in models:
        raise KeyError(f"{model} is not a mart in {MARTS_YML}: one of {', '.join(sorted(models))}")
    spec = models[model]
    if not spec.get("config", {}).get("contract", {}).get("enforced"):
        raise ValueError(f"{model} has no enforced contract in {MARTS_YML}: a stand-in needs one to copy")
    columns = []
    for c in spec["columns"]:
        if "data_type" not in c:
            raise ValueError(f"{model}.{c['name']} has no data_type in {MARTS_YML}")
        not_null = any(k.get("type") == "not_null" for k in c.get("constraints", []))
        columns.append(Column(c["name"], c["data_type"], not_null))
    return tuple(columns)


def stand_in_ddl(model: str, schema: str = "analytics") -> str:
    """``CREATE TABLE IF NOT EXISTS <schema>.<model>`` as the contract says, plus its indexes."""
    extra = STAND_INS[model]
    columns = contract_columns(model)
    names = {c.name for c in columns}
    unknown = (set(extra.defaults) | set(extra.generated)) - names
    if unknown:
        raise ValueError(f"stand-in of {model} sets {sorted(unknown)}, which its contract does not have")
    lines = []
    for c in columns:
        line = f"    {c.name} {c.data_type}"
        if c.name in extra.generated:
            line += f" GENERATED ALWAYS AS ({extra.generated[c.name]}) STORED"
        if c.not_null:
            line += " NOT NULL"
        if c.name in extra.defaults:
            line += f" DEFAULT {extra.defaults[c.name]}"
        lines.append(line)
    body = ",\n".join(lines)
    statements = [f"CREATE SCHEMA IF NOT EXISTS {schema}", f"CREATE TABLE IF NOT EXISTS {schema}.{model} (\n{body}\n)"]
    for i, index in enumerate(extra.indexes):
        unique, _, cols = index.rpartition(" ")
        create = " ".join(filter(None, ("CREATE", unique, "INDEX")))
        statements.append(f"{create} IF NOT EXISTS {model}_standin_{i} ON {schema}.{model} {cols}")
    return ";\n".join(statements) + ";\n"
