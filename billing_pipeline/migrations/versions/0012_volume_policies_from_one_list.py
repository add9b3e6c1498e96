"""The CHECKs on ``volume_policy`` written from the one list of volume policies.

``accounts.volume_policy`` and ``lifecycle_cleanups.volume_policy`` accept exactly
``billing_pipeline.core.volume_policies.VOLUME_POLICIES`` (the dbt project var
``volume_policies``), the values the staging test and the lifecycle use too. Until now each
CHECK was typed out by hand (0001, 0003, 0008) and the staging test had its own, shorter list,
so an account on ``snapshot`` stopped the cycle. Each constraint's comment says where its values
come from. When the list changes, a new migration calls ``check_sql`` again: a database past this
revision keeps the values it was migrated with (tests/integration/test_volume_policies_db.py
compares them with the list).

Revision ID: 0012
Revises: 0009
"""

from alembic import op

from billing_pipeline.core.volume_policies import check_sql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

CONSTRAINTS = (
    ("accounts", "accounts_volume_policy_check"),
    ("lifecycle_cleanups", "lifecycle_cleanups_volume_policy_check"),
)
SOURCE = "values from the dbt project var volume_policies (billing_pipeline.core.volume_policies)"


def upgrade() -> None:
    for table, name in CONSTRAINTS:
        op.execute(f"""
ALTER TABLE billing.{table} DROP CONSTRAINT IF EXISTS {name};
ALTER TABLE billing.{table} ADD CONSTRAINT {name} CHECK ({check_sql()});
COMMENT ON CONSTRAINT {name} ON billing.{table} IS '{SOURCE}';
""")


def downgrade() -> None:
    # The values were 0008's when this revision was written; only the comments are new.
    for table, name in CONSTRAINTS:
        op.execute(f"COMMENT ON CONSTRAINT {name} ON billing.{table} IS NULL;")
