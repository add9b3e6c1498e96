"""A read-only role for analysts: the dbt marts (schema ``analytics``) and nothing else.

``billing_analyst`` is a NOLOGIN group role. Give a person access with, for example::

    CREATE ROLE alice LOGIN PASSWORD '...' IN ROLE billing_analyst;

Members can SELECT the marts (fct_priced_usage, fct_usage_charges, fct_usage_reconciliation,
fct_account_balances, fct_invoice_lines) and are refused on schema ``billing`` (the ledger,
platform and raw ingestion tables) and on dbt's staging and intermediate schemas.

dbt drops and recreates the mart tables; its ``grants`` config (dbt_project.yml) grants SELECT
again on every build, and the default privileges below cover tables created in ``analytics`` by
the role that runs this migration (normally the one that runs dbt) as a second line.

Roles are cluster-wide while many (test) databases share one server, so the role is created
only if missing, and the downgrade leaves it in place (other databases may use it).

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

ROLE = "billing_analyst"

UPGRADE = f"""
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}') THEN
        CREATE ROLE {ROLE} NOLOGIN;
    END IF;
EXCEPTION
    -- Another database's migration created it between the check and the CREATE: depending on
    -- the moment, the server reports a duplicate role or the catalogue's unique index.
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

CREATE SCHEMA IF NOT EXISTS analytics;
COMMENT ON SCHEMA analytics IS
    'dbt marts for analysts (read-only role {ROLE}); built by the dbt project in dbt_project/.';

REVOKE ALL ON SCHEMA billing FROM {ROLE};
REVOKE ALL ON ALL TABLES IN SCHEMA billing FROM {ROLE};
GRANT USAGE ON SCHEMA analytics TO {ROLE};
GRANT SELECT ON ALL TABLES IN SCHEMA analytics TO {ROLE};
ALTER DEFAULT PRIVILEGES IN SCHEMA analytics GRANT SELECT ON TABLES TO {ROLE};
"""

DOWNGRADE = f"""
ALTER DEFAULT PRIVILEGES IN SCHEMA analytics REVOKE SELECT ON TABLES FROM {ROLE};
REVOKE SELECT ON ALL TABLES IN SCHEMA analytics FROM {ROLE};
REVOKE USAGE ON SCHEMA analytics FROM {ROLE};
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
