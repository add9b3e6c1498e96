"""Credit grants: paid and free credits, their burn-down order, expiry and debt (issue 22; docs/rules/ledger.md, "Grants").

* ``credit_transactions`` gains the types ``promotional_grant`` (amount > 0) and
  ``grant_expiry`` (amount < 0, its reference names the grant: ``grant_entry_id``).
* ``accounts`` gains the auto top-up mode (``fixed`` as before, or ``target``: top up to
  ``auto_topup_target_balance``) and ``grant_expiry_warning_days``.
* ``grants``: the terms of every credit-adding entry (kind paid/free, priority, expiry, what was
  paid); append-only like the ledger.
* ``grant_draws``: what each debit, expiry or give-back took from (or returned to) each grant;
  append-only. Written by the posting hook (``ledger/grants.py``) in the posting's transaction.
* ``grant_balances`` and ``grant_debts``: caches, like ``credits``, equal to the replay of the
  ledger at every commit (``billing verify`` checks it).
* ``invoice_lines.line_type`` and ``ledger_entry_period`` know the two new types; the period of
  a ``grant_expiry`` is the month of its grant's ``expires_at`` (docs/rules/month-end.md).

The entries already posted get their grants, draws, balances and debts by replaying the ledger
in order with the same code the posting uses (``ledger.grants.backfill``), so what the migration
writes is exactly what ``billing verify``'s rebuild expects. A paid top-up's paid amount comes
from its reference (``reference.paid``), else from its ``topup_attempts`` row (an auto top-up
credits exactly what was charged; the currency was not recorded, so it stays null).

Revision ID: 0014
Revises: 0013
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

UPGRADE = r"""
ALTER TABLE billing.credit_transactions
    DROP CONSTRAINT credit_transactions_type_check,
    ADD CONSTRAINT credit_transactions_type_check CHECK (type IN (
        'topup', 'auto_topup', 'usage_deduction', 'sla_credit', 'admin_adjustment', 'reversal',
        'promotional_grant', 'grant_expiry')),
    DROP CONSTRAINT sign_matches_type,
    ADD CONSTRAINT sign_matches_type CHECK (
        (type IN ('topup', 'auto_topup', 'sla_credit', 'promotional_grant') AND amount > 0)
        OR (type IN ('usage_deduction', 'grant_expiry') AND amount < 0)
        OR type IN ('admin_adjustment', 'reversal')
    ),
    ADD CONSTRAINT grant_expiry_names_grant CHECK (type <> 'grant_expiry' OR reference ? 'grant_entry_id');

ALTER TABLE billing.accounts
    ADD COLUMN auto_topup_mode text NOT NULL DEFAULT 'fixed'
        CONSTRAINT accounts_auto_topup_mode_check CHECK (auto_topup_mode IN ('fixed', 'target')),
    ADD COLUMN auto_topup_target_balance numeric(20, 6)
        CONSTRAINT accounts_auto_topup_target_balance_check CHECK (auto_topup_target_balance > 0),
    ADD COLUMN grant_expiry_warning_days integer NOT NULL DEFAULT 7
        CONSTRAINT accounts_grant_expiry_warning_days_check CHECK (grant_expiry_warning_days >= 0),
    ADD CONSTRAINT accounts_target_mode_has_target
        CHECK (auto_topup_mode <> 'target' OR auto_topup_target_balance IS NOT NULL);

-- The terms of each credit-adding entry (topup, auto_topup: paid; promotional_grant, sla_credit,
-- a positive admin_adjustment: free; the rare positive reversal that gives back more than its
-- entries took: free, see docs/rules/ledger.md). One row per entry, written with it.
CREATE TABLE billing.grants (
    entry_id      bigint PRIMARY KEY REFERENCES billing.credit_transactions (id),
    account_id    text NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('paid', 'free')),
    source_type   text NOT NULL,
    priority      integer NOT NULL,
    expires_at    timestamptz,
    granted       numeric(20, 6) NOT NULL CHECK (granted > 0),
    granted_at    timestamptz NOT NULL,
    paid_amount   numeric,
    paid_currency text,
    CONSTRAINT grants_paid_terms_only_on_paid CHECK (kind = 'paid' OR (paid_amount IS NULL AND paid_currency IS NULL))
);
CREATE INDEX grants_account_idx ON billing.grants (account_id, entry_id);
-- The expiring grants of an account (the posting hook splits a batch of debits at expiries;
-- the hourly expiry finds what has expired).
CREATE INDEX grants_expiring_idx ON billing.grants (account_id, expires_at) WHERE expires_at IS NOT NULL;
COMMENT ON TABLE billing.grants IS
    'Credit grants: the terms of every credit-adding ledger entry. Append-only.';

-- What each entry drew from each grant (+), or gave back to it (-, a reversal). No foreign key
-- on entry_id (checked by billing verify's rebuild): a per-row trigger for every usage
-- deduction of the hourly settlement would cost more than the draws themselves.
CREATE TABLE billing.grant_draws (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    entry_id       bigint NOT NULL,
    grant_entry_id bigint NOT NULL REFERENCES billing.grants (entry_id),
    amount         numeric(20, 6) NOT NULL CHECK (amount <> 0)
);
CREATE INDEX grant_draws_entry_idx ON billing.grant_draws (entry_id);
CREATE INDEX grant_draws_grant_idx ON billing.grant_draws (grant_entry_id);
COMMENT ON TABLE billing.grant_draws IS
    'Burn-down of the credit grants: + drawn by a debit or expiry, - given back by a reversal. Append-only.';

-- Caches, like billing.credits: equal to the replay of the ledger at every commit.
CREATE TABLE billing.grant_balances (
    grant_entry_id bigint PRIMARY KEY REFERENCES billing.grants (entry_id),
    account_id     text NOT NULL,
    drawn          numeric(20, 6) NOT NULL DEFAULT 0,
    expired        numeric(20, 6) NOT NULL DEFAULT 0 CHECK (expired >= 0),
    remaining      numeric(20, 6) NOT NULL CHECK (remaining >= 0)
);
CREATE INDEX grant_balances_open_idx ON billing.grant_balances (account_id) WHERE remaining > 0;

CREATE TABLE billing.grant_debts (
    entry_id    bigint PRIMARY KEY,
    account_id  text NOT NULL,
    outstanding numeric(20, 6) NOT NULL CHECK (outstanding > 0)
);
CREATE INDEX grant_debts_account_idx ON billing.grant_debts (account_id, entry_id);

CREATE TRIGGER grants_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON billing.grants
    FOR EACH STATEMENT EXECUTE FUNCTION billing.refuse_append_only_change(
        'A grant''s terms never change; correct them with a new entry (an adjustment or a reversal).');
CREATE TRIGGER grant_draws_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON billing.grant_draws
    FOR EACH STATEMENT EXECUTE FUNCTION billing.refuse_append_only_change(
        'Draws are written by the ledger with their entries; correct them with a new entry.');
REVOKE UPDATE, DELETE, TRUNCATE ON billing.grants, billing.grant_draws FROM PUBLIC;

ALTER TABLE billing.invoice_lines
    DROP CONSTRAINT invoice_lines_line_type_check,
    ADD CONSTRAINT invoice_lines_line_type_check CHECK (line_type IN (
        'usage', 'topup', 'auto_topup', 'sla_credit', 'admin_adjustment', 'reversal',
        'promotional_grant', 'grant_expiry'));

-- A grant_expiry's period is the month of its grant's expires_at, which its reference carries.
CREATE OR REPLACE FUNCTION billing.ledger_entry_period(entry_type text, reference jsonb, created_at timestamptz)
RETURNS date LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE
        -- the settlement's own spelling (Hour.text): the month without parsing a timestamp
        WHEN entry_type IN ('usage_deduction', 'reversal') AND reference ? 'usage_kind'
             AND reference ->> 'hour' LIKE '____-__-__T__:__:__+00:00'
            THEN (left(reference ->> 'hour', 7) || '-01')::date
        WHEN billing.ledger_entry_usage_hour(entry_type, reference) IS NOT NULL
            THEN (date_trunc('month', billing.ledger_entry_usage_hour(entry_type, reference), 'UTC')
                  AT TIME ZONE 'UTC')::date
        WHEN entry_type = 'sla_credit' AND reference ->> 'month' ~ '^\d{4}-\d{2}$'
            THEN ((reference ->> 'month') || '-01')::date
        WHEN entry_type = 'grant_expiry' AND reference ->> 'expires_at' ~ '^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}'
            THEN (date_trunc('month', billing.grant_time(reference ->> 'expires_at'), 'UTC') AT TIME ZONE 'UTC')::date
        ELSE (date_trunc('month', created_at, 'UTC') AT TIME ZONE 'UTC')::date
    END
$$;
"""

# A time written in a reference (a grant's expiry): with an offset as given, without one UTC,
# whatever the session's time zone (as core.times.parse_time reads it).
GRANT_TIME = r"""
CREATE FUNCTION billing.grant_time(value text)
RETURNS timestamptz LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN value ~ '(Z|[+-]\d{2}(:?\d{2})?)$' THEN value::timestamptz
                ELSE value::timestamp AT TIME ZONE 'UTC' END
$$;
"""

DOWNGRADE = r"""
CREATE OR REPLACE FUNCTION billing.ledger_entry_period(entry_type text, reference jsonb, created_at timestamptz)
RETURNS date LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN entry_type IN ('usage_deduction', 'reversal') AND reference ? 'usage_kind'
             AND reference ->> 'hour' LIKE '____-__-__T__:__:__+00:00'
            THEN (left(reference ->> 'hour', 7) || '-01')::date
        WHEN billing.ledger_entry_usage_hour(entry_type, reference) IS NOT NULL
            THEN (date_trunc('month', billing.ledger_entry_usage_hour(entry_type, reference), 'UTC')
                  AT TIME ZONE 'UTC')::date
        WHEN entry_type = 'sla_credit' AND reference ->> 'month' ~ '^\d{4}-\d{2}$'
            THEN ((reference ->> 'month') || '-01')::date
        ELSE (date_trunc('month', created_at, 'UTC') AT TIME ZONE 'UTC')::date
    END
$$;
DROP FUNCTION billing.grant_time(text);
ALTER TABLE billing.invoice_lines
    DROP CONSTRAINT invoice_lines_line_type_check,
    ADD CONSTRAINT invoice_lines_line_type_check CHECK (line_type IN (
        'usage', 'topup', 'auto_topup', 'sla_credit', 'admin_adjustment', 'reversal'));
DROP TABLE billing.grant_debts, billing.grant_balances, billing.grant_draws, billing.grants;
ALTER TABLE billing.accounts
    DROP CONSTRAINT accounts_target_mode_has_target,
    DROP COLUMN grant_expiry_warning_days,
    DROP COLUMN auto_topup_target_balance,
    DROP COLUMN auto_topup_mode;
ALTER TABLE billing.credit_transactions
    DROP CONSTRAINT grant_expiry_names_grant,
    DROP CONSTRAINT sign_matches_type,
    ADD CONSTRAINT sign_matches_type CHECK (
        (type IN ('topup', 'auto_topup', 'sla_credit') AND amount > 0)
        OR (type = 'usage_deduction' AND amount < 0)
        OR type IN ('admin_adjustment', 'reversal')
    ),
    DROP CONSTRAINT credit_transactions_type_check,
    ADD CONSTRAINT credit_transactions_type_check CHECK (type IN (
        'topup', 'auto_topup', 'usage_deduction', 'sla_credit', 'admin_adjustment', 'reversal'));
"""


def upgrade() -> None:
    op.execute(GRANT_TIME)
    op.execute(UPGRADE)
    # The entries already posted: replayed in order by the posting's own code, in this
    # migration's transaction (Alembic runs on psycopg 3, which the replay speaks).
    from billing_pipeline.ledger.grants import backfill

    with op.get_bind().connection.dbapi_connection.cursor() as cur:
        backfill(cur)


def downgrade() -> None:
    op.execute(DOWNGRADE)
