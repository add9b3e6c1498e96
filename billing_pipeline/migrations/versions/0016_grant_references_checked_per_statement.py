"""The grant tables' references checked once per statement, set-based (issue 24, point 4).

``grants.entry_id`` (→ ``credit_transactions``), ``grant_balances.grant_entry_id`` and
``grant_draws.grant_entry_id`` (→ ``grants``) were foreign keys: each checked its rows one by one
with a trigger of its own that also locks the row it finds (``FOR KEY SHARE``). Posting a
100,000-entry batch of top-ups and usage spent more time in those checks (0.6 s on the bench)
than in writing the rows. As migration 0001 did for ``credit_transactions.account_id``, each
is now one statement-level check of the statement's new rows, so what the foreign keys kept is
still kept:

* every grant belongs to a ledger entry, every balance and draw to a grant, checked when the row
  is written (``foreign_key_violation``, naming the row), by the table owner and superusers alike;
* a referenced row cannot go away: ``credit_transactions``, ``grants`` and ``grant_draws`` are
  append-only (UPDATE, DELETE and TRUNCATE refused by trigger), which is also why no row lock is
  needed; a balance row's grant never changes (an UPDATE of ``grant_entry_id`` is refused);
* ``billing verify`` rebuilds the grant tables from the ledger and compares every row.

The new rows are probed by primary key one at a time (``OFFSET 0`` keeps the probe a loop, so a
batch never hashes the whole ledger), in the statement's own snapshot.

Revision ID: 0016
Revises: 0015
"""

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

UPGRADE = r"""
ALTER TABLE billing.grants DROP CONSTRAINT grants_entry_id_fkey;
ALTER TABLE billing.grant_balances DROP CONSTRAINT grant_balances_grant_entry_id_fkey;
ALTER TABLE billing.grant_draws DROP CONSTRAINT grant_draws_grant_entry_id_fkey;

CREATE FUNCTION billing.check_grant_entries() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    missing bigint;
BEGIN
    SELECT n.entry_id INTO missing FROM new_grants n
    WHERE NOT EXISTS (SELECT 1 FROM (SELECT 1 FROM billing.credit_transactions t WHERE t.id = n.entry_id OFFSET 0) t)
    LIMIT 1;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'billing.grants: grant % has no ledger entry % in billing.credit_transactions', missing, missing
            USING ERRCODE = 'foreign_key_violation', HINT = 'Grants are written by the ledger with their entries.';
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER grants_have_entries
    AFTER INSERT ON billing.grants
    REFERENCING NEW TABLE AS new_grants
    FOR EACH STATEMENT EXECUTE FUNCTION billing.check_grant_entries();

-- Shared by grant_balances and grant_draws: both name a grant in grant_entry_id.
CREATE FUNCTION billing.check_rows_name_grants() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    missing bigint;
BEGIN
    SELECT n.grant_entry_id INTO missing FROM new_rows n
    WHERE NOT EXISTS (SELECT 1 FROM (SELECT 1 FROM billing.grants g WHERE g.entry_id = n.grant_entry_id OFFSET 0) g)
    LIMIT 1;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION '%.%: grant % is not in billing.grants', TG_TABLE_SCHEMA, TG_TABLE_NAME, missing
            USING ERRCODE = 'foreign_key_violation', HINT = 'Balances and draws are written by the ledger with their grants.';
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER grant_balances_name_grants
    AFTER INSERT ON billing.grant_balances
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION billing.check_rows_name_grants();
CREATE TRIGGER grant_draws_name_grants
    AFTER INSERT ON billing.grant_draws
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION billing.check_rows_name_grants();

-- A balance row is its grant's for good: fires only for an UPDATE that sets grant_entry_id.
CREATE FUNCTION billing.keep_balance_grant() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.grant_entry_id IS DISTINCT FROM OLD.grant_entry_id THEN
        RAISE EXCEPTION 'billing.grant_balances: the balance of grant % cannot be moved to grant %',
            OLD.grant_entry_id, NEW.grant_entry_id
            USING ERRCODE = 'foreign_key_violation', HINT = 'A grant''s balance row belongs to that grant.';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER grant_balances_keep_grant
    BEFORE UPDATE OF grant_entry_id ON billing.grant_balances
    FOR EACH ROW EXECUTE FUNCTION billing.keep_balance_grant();
"""

DOWNGRADE = r"""
DROP TRIGGER grant_balances_keep_grant ON billing.grant_balances;
DROP TRIGGER grant_draws_name_grants ON billing.grant_draws;
DROP TRIGGER grant_balances_name_grants ON billing.grant_balances;
DROP TRIGGER grants_have_entries ON billing.grants;
DROP FUNCTION billing.keep_balance_grant(), billing.check_rows_name_grants(), billing.check_grant_entries();
ALTER TABLE billing.grants
    ADD CONSTRAINT grants_entry_id_fkey FOREIGN KEY (entry_id) REFERENCES billing.credit_transactions (id);
ALTER TABLE billing.grant_balances
    ADD CONSTRAINT grant_balances_grant_entry_id_fkey FOREIGN KEY (grant_entry_id) REFERENCES billing.grants (entry_id);
ALTER TABLE billing.grant_draws
    ADD CONSTRAINT grant_draws_grant_entry_id_fkey FOREIGN KEY (grant_entry_id) REFERENCES billing.grants (entry_id);
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
