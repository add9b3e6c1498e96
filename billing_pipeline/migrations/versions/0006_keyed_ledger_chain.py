"""The keyed ledger chain: each entry names the key that signed its hash.

From this revision on every ledger entry's hash is an HMAC-SHA256 under a key kept outside the
database (``BILLING_LEDGER_KEY``, see ``ledger/entries.py``), and the entry stores the key's id
in ``key_id`` so keys can rotate.

Entries written before this revision are not re-chained (that would rewrite the very history the
chain protects): they keep their unkeyed SHA-256 hash and get the key id ``legacy-sha256``. The
highest entry id at migration time is recorded in ``billing.ledger_legacy_boundary`` and in a
check constraint, so no entry written afterwards can claim the legacy hash; ``billing verify``
accepts legacy hashes only up to that boundary, only before an account's first keyed entry, and
reports how many remain. An account's first keyed entry seals its legacy prefix under the key,
because its HMAC covers the last legacy hash.

Adding a column with a constant default and a check constraint are DDL, not UPDATEs: the
append-only trigger does not fire and no row is rewritten.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE billing.credit_transactions ADD COLUMN key_id text NOT NULL DEFAULT 'legacy-sha256';
-- New rows must name their key: a writer that forgets it is refused.
ALTER TABLE billing.credit_transactions ALTER COLUMN key_id DROP DEFAULT;
ALTER TABLE billing.credit_transactions ADD CONSTRAINT key_id_is_an_id
    CHECK (key_id ~ '^[A-Za-z0-9._-]{1,64}$');
COMMENT ON COLUMN billing.credit_transactions.key_id IS
    'Id of the ledger key (HMAC-SHA256) that signed entry_hash; legacy-sha256 = unkeyed, written before revision 0006.';

CREATE TABLE billing.ledger_legacy_boundary (
    max_legacy_id bigint NOT NULL,
    recorded_at   timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE billing.ledger_legacy_boundary IS
    'The last ledger entry id written before the chain was keyed (revision 0006). Append-only.';
INSERT INTO billing.ledger_legacy_boundary (max_legacy_id)
SELECT coalesce(max(id), 0) FROM billing.credit_transactions;

CREATE TRIGGER ledger_legacy_boundary_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON billing.ledger_legacy_boundary
    FOR EACH STATEMENT EXECUTE FUNCTION billing.refuse_append_only_change(
        'The legacy boundary is recorded once, by migration 0006.');

DO $$
DECLARE
    boundary bigint := (SELECT max_legacy_id FROM billing.ledger_legacy_boundary);
BEGIN
    EXECUTE format(
        'ALTER TABLE billing.credit_transactions ADD CONSTRAINT legacy_hash_only_before_keying '
        'CHECK (key_id <> %L OR id <= %s)', 'legacy-sha256', boundary);
END
$$;
"""

DOWNGRADE = """
ALTER TABLE billing.credit_transactions DROP CONSTRAINT legacy_hash_only_before_keying;
ALTER TABLE billing.credit_transactions DROP CONSTRAINT key_id_is_an_id;
ALTER TABLE billing.credit_transactions DROP COLUMN key_id;
DROP TABLE billing.ledger_legacy_boundary;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
