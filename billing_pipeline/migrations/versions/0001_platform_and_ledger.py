"""Platform tables (docs/rules/ingestion.md) and the append-only credit ledger (docs/rules/ledger.md).

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Platform tables: the platform writes them in production; the pipeline only reads them.
# machine_usages and pricing_configs deliberately carry no checks or foreign keys: a bad row
# written by the platform must reach the pipeline so it can be quarantined with a reason,
# rather than being rejected somewhere nobody sees.
PLATFORM = """
CREATE TABLE billing.accounts (
    id                       text PRIMARY KEY,
    name                     text NOT NULL,
    email                    text,
    low_balance_threshold    numeric(20, 6) NOT NULL DEFAULT 10,
    grace_period_hours       integer NOT NULL DEFAULT 72 CHECK (grace_period_hours >= 0),
    volume_policy            text NOT NULL DEFAULT 'delete' CHECK (volume_policy IN ('delete', 'retain')),
    volume_retention_days    integer NOT NULL DEFAULT 7 CHECK (volume_retention_days >= 0),
    early_idle_deletion      boolean NOT NULL DEFAULT false,
    auto_topup_enabled       boolean NOT NULL DEFAULT false,
    auto_topup_threshold     numeric(20, 6),
    auto_topup_amount        numeric(20, 6),
    auto_topup_monthly_limit numeric(20, 6),
    stripe_customer_id       text,
    stripe_payment_method_id text,
    notify_email             text,
    notify_webhook_url       text,
    created_at               timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE billing.deployments (
    id         text PRIMARY KEY,
    account_id text NOT NULL REFERENCES billing.accounts (id),
    namespace  text NOT NULL,
    name       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz
);
CREATE INDEX deployments_account_idx ON billing.deployments (account_id);
CREATE INDEX deployments_namespace_name_idx ON billing.deployments (namespace, name);

CREATE TABLE billing.domains (
    hostname      text PRIMARY KEY,
    deployment_id text NOT NULL REFERENCES billing.deployments (id),
    status        text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'released'))
);

CREATE TABLE billing.machine_usages (
    id           text PRIMARY KEY,
    account_id   text,
    machine_id   text,
    machine_type text,
    node_name    text,
    started_at   timestamptz,
    ended_at     timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX machine_usages_updated_idx ON billing.machine_usages (updated_at);

CREATE TABLE billing.pricing_configs (
    id             text PRIMARY KEY,
    resource       text NOT NULL,
    machine_type   text,
    unit           text NOT NULL,
    unit_price     numeric NOT NULL,
    basis          text NOT NULL DEFAULT 'usage',
    effective_from timestamptz NOT NULL,
    effective_to   timestamptz
);
"""

# The ledger. Sign and presence rules are checked here as well as in the ledger module, so a
# writer that bypasses the module still cannot post a positive usage deduction.
LEDGER = """
CREATE TABLE billing.credit_transactions (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id      text NOT NULL,  -- checked per statement, see credit_transactions_known_accounts
    account_seq     bigint NOT NULL CHECK (account_seq > 0),
    type            text NOT NULL CHECK (type IN ('topup', 'auto_topup', 'usage_deduction',
                                                  'sla_credit', 'admin_adjustment', 'reversal')),
    amount          numeric(20, 6) NOT NULL CHECK (amount <> 0),
    balance_after   numeric(20, 6) NOT NULL,
    idempotency_key text NOT NULL UNIQUE,
    reference       jsonb NOT NULL DEFAULT '{}'::jsonb,
    reason          text,
    actor           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    prev_hash       text NOT NULL,
    entry_hash      text NOT NULL,
    CONSTRAINT credit_transactions_account_seq_key UNIQUE (account_id, account_seq),
    CONSTRAINT sign_matches_type CHECK (
        (type IN ('topup', 'auto_topup', 'sla_credit') AND amount > 0)
        OR (type = 'usage_deduction' AND amount < 0)
        OR type IN ('admin_adjustment', 'reversal')
    ),
    CONSTRAINT adjustment_has_reason_and_actor CHECK (
        type <> 'admin_adjustment'
        OR (coalesce(btrim(reason), '') <> '' AND coalesce(btrim(actor), '') <> '')
    ),
    CONSTRAINT reversal_names_reversed_entry CHECK (type <> 'reversal' OR reference ? 'reverses')
);
CREATE INDEX credit_transactions_created_idx ON billing.credit_transactions (created_at);

COMMENT ON TABLE billing.credit_transactions IS
    'Append-only credit ledger. UPDATE, DELETE and TRUNCATE are refused by trigger; '
    'each entry is hash-chained to the previous entry of its account.';

-- Immutability: a statement-level trigger fires for the table owner and superusers alike
-- (only an explicit DISABLE TRIGGER / session_replication_role switches it off, which the
-- hash chain then exposes).
-- Shared by every append-only table; the trigger's argument is the hint for the person refused.
CREATE FUNCTION billing.refuse_append_only_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%.% is append-only: % refused', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege', HINT = TG_ARGV[0];
END;
$$;

CREATE TRIGGER credit_transactions_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON billing.credit_transactions
    FOR EACH STATEMENT EXECUTE FUNCTION billing.refuse_append_only_change(
        'Correct a mistake with a new entry (a reversal or an adjustment), never an edit.');

REVOKE UPDATE, DELETE, TRUNCATE ON billing.credit_transactions FROM PUBLIC;

-- Every entry belongs to a known account. A foreign key would check each row with a trigger of
-- its own (a third of the cost of posting a 100,000-entry batch); this checks each statement's
-- new rows at once, set-based. Together with the guard below it keeps what the foreign key kept.
CREATE FUNCTION billing.check_ledger_accounts() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    unknown text;
BEGIN
    SELECT n.account_id INTO unknown FROM (SELECT DISTINCT account_id FROM new_entries) n
    WHERE NOT EXISTS (SELECT 1 FROM billing.accounts a WHERE a.id = n.account_id)
    LIMIT 1;
    IF unknown IS NOT NULL THEN
        RAISE EXCEPTION 'billing.credit_transactions: unknown account %', quote_literal(unknown)
            USING ERRCODE = 'foreign_key_violation', HINT = 'Create the account in billing.accounts first.';
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER credit_transactions_known_accounts
    AFTER INSERT ON billing.credit_transactions
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION billing.check_ledger_accounts();

-- An account with ledger entries can be neither deleted nor renamed.
CREATE FUNCTION billing.keep_accounts_with_entries() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM billing.credit_transactions t WHERE t.account_id = OLD.id) THEN
        RAISE EXCEPTION 'account % has ledger entries: it can be neither deleted nor renamed', quote_literal(OLD.id)
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END;
$$;

CREATE TRIGGER accounts_keep_ledger_owners
    BEFORE DELETE OR UPDATE OF id ON billing.accounts
    FOR EACH ROW EXECUTE FUNCTION billing.keep_accounts_with_entries();

-- A cache of each account's balance, equal to the sum of its ledger at every commit.
CREATE TABLE billing.credits (
    account_id          text PRIMARY KEY REFERENCES billing.accounts (id),
    balance             numeric(20, 6) NOT NULL DEFAULT 0,
    last_transaction_id bigint REFERENCES billing.credit_transactions (id),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
"""


def upgrade() -> None:
    op.execute(PLATFORM)
    op.execute(LEDGER)


def downgrade() -> None:
    op.execute(
        "DROP TABLE billing.credits, billing.credit_transactions, billing.pricing_configs, "
        "billing.machine_usages, billing.domains, billing.deployments, billing.accounts; "
        "DROP FUNCTION billing.refuse_append_only_change(), billing.check_ledger_accounts(), "
        "billing.keep_accounts_with_entries();"
    )
