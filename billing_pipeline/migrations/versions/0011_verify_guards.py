"""What ``billing verify`` needs to trust nothing the database says about itself (issue 21, point 3).

* ``ledger_legacy_seal``: the pre-key legacy entries (migration 0006) sealed under the ledger
  key: the boundary id and each account's last legacy entry (sequence number and hash), with an
  HMAC over them. A row in the same database proves nothing by itself (someone with full rights
  can move ``ledger_legacy_boundary`` and re-chain entries as legacy with plain SHA-256), but
  they cannot compute the HMAC. It is written once, by ``billing verify --seal-legacy``, because
  a migration has no ledger key; a database without legacy entries never needs it. Append-only.
* ``invoice_number_counter`` moves only by issuing: an UPDATE must set it to the highest issued
  number (the issuing transaction inserts its invoices first, then moves the counter), never
  back; DELETE and TRUNCATE are refused. ``billing verify`` checks the numbering again, for a
  session that switched triggers off.

Revision ID: 0011
Revises: 0009
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE billing.ledger_legacy_seal (
    singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    max_legacy_id bigint NOT NULL,
    legacy_heads  jsonb NOT NULL,
    key_id        text NOT NULL,
    mac           text NOT NULL,
    sealed_at     timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE billing.ledger_legacy_seal IS
    'The pre-key legacy entries sealed under the ledger key (HMAC): boundary and each account''s last legacy entry.';
CREATE TRIGGER ledger_legacy_seal_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON billing.ledger_legacy_seal
    FOR EACH STATEMENT EXECUTE FUNCTION billing.refuse_append_only_change(
        'The legacy entries are sealed once, by billing verify --seal-legacy.');
REVOKE UPDATE, DELETE, TRUNCATE ON billing.ledger_legacy_seal FROM PUBLIC;

CREATE FUNCTION billing.invoice_number_counter_moves_by_issuing() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    issued bigint := (SELECT coalesce(max(number), 0) FROM billing.invoices);
BEGIN
    IF NEW.last_number IS DISTINCT FROM issued OR NEW.last_number < OLD.last_number
       OR NEW.singleton IS DISTINCT FROM OLD.singleton THEN
        RAISE EXCEPTION 'billing.invoice_number_counter moves only by issuing invoices: % refused (the last issued number is %)',
            NEW.last_number, issued
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Invoice numbers are gapless; only the month close (issue_invoices) advances the counter.';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER invoice_number_counter_moves_by_issuing
    BEFORE UPDATE ON billing.invoice_number_counter
    FOR EACH ROW EXECUTE FUNCTION billing.invoice_number_counter_moves_by_issuing();
CREATE TRIGGER invoice_number_counter_kept
    BEFORE DELETE OR TRUNCATE ON billing.invoice_number_counter
    FOR EACH STATEMENT EXECUTE FUNCTION billing.refuse_append_only_change(
        'Invoice numbers are gapless; only the month close advances the counter.');
REVOKE DELETE, TRUNCATE ON billing.invoice_number_counter FROM PUBLIC;
"""

DOWNGRADE = """
DROP TRIGGER invoice_number_counter_kept ON billing.invoice_number_counter;
DROP TRIGGER invoice_number_counter_moves_by_issuing ON billing.invoice_number_counter;
DROP FUNCTION billing.invoice_number_counter_moves_by_issuing();
DROP TABLE billing.ledger_legacy_seal;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
