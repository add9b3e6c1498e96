"""The volume policies an account may choose (``billing.accounts.volume_policy``;
their rules: docs/rules/lifecycle.md).

The one list lives in ``dbt_project/dbt_project.yml`` as the project var ``volume_policies``:
it is the only file both dbt (which can read no other at parse or run time without a flag on
every call) and Python read as it is, so a hand-run ``dbt build`` checks the same values as the
cycle. Everything else takes it from there:

* dbt: the staging test ``accepted_values_stg_platform__accounts_volume_policy`` reads the var;
* the database: migration 0012 writes the CHECKs of ``accounts`` and ``lifecycle_cleanups``
  with ``check_sql`` (a later change to the list needs a migration calling it again);
* the lifecycle: its dispatch (``lifecycle/volumes.py``) has exactly one entry per value.

``tests/unit/test_volume_policies.py`` and ``tests/integration/test_volume_policies_db.py`` hold
the three to this list.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml  # PyYAML: a dependency of dbt-core, which the pipeline depends on

from billing_pipeline.core.errors import ConfigurationError

DBT_PROJECT_FILE = Path(__file__).resolve().parents[2] / "dbt_project" / "dbt_project.yml"
VAR_NAME = "volume_policies"
_NAME = re.compile(r"[a-z][a-z_]*")


def load(path: Path = DBT_PROJECT_FILE) -> tuple[str, ...]:
    """The policies listed in ``path``'s ``vars.volume_policies``, in their order."""
    try:
        # libyaml's loader when PyYAML has it: read at import, on `billing status`'s path.
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        values = (yaml.load(path.read_text(), Loader=loader).get("vars") or {}).get(VAR_NAME)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"cannot read the volume policies from {path}: {exc}") from None
    if (
        not isinstance(values, list)
        or not values
        or len(set(values)) != len(values)
        or not all(isinstance(v, str) and _NAME.fullmatch(v) for v in values)
    ):
        raise ConfigurationError(
            f"{path}: vars.{VAR_NAME} must be a YAML list of distinct lower-case names, got {values!r}; "
            "fix the list there"
        )
    return tuple(values)


VOLUME_POLICIES: tuple[str, ...] = load()


def check_sql(column: str = "volume_policy") -> str:
    """The CHECK expression the database holds ``column`` to: ``column IN ('delete', ...)``.
    The values are names ``load`` validated (lower-case letters and underscores), so quoting
    them as literals is safe."""
    values = ", ".join(f"'{v}'" for v in VOLUME_POLICIES)
    return f"{column} IN ({values})"
