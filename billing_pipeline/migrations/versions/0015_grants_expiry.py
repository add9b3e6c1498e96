"""The last ledger entry each lifecycle evaluation saw (issue 22: "credits expired" as a cause).

When an account's state changes, the lifecycle says why when the ledger entries posted since its
previous evaluation include a ``grant_expiry`` ("promotional credits expired"). "Since" is read
from the ledger's own order, not from clocks: the entry ids after ``last_entry_id``, the account's
newest entry (``billing.credits.last_transaction_id``) when it was last evaluated. Rows written
before this migration keep NULL: their next evaluation falls back to the expiries whose
``expires_at`` is after the previous evaluation's clock.

Revision ID: 0015
Revises: 0014
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE billing.account_lifecycle ADD COLUMN last_entry_id bigint")


def downgrade() -> None:
    op.execute("ALTER TABLE billing.account_lifecycle DROP COLUMN last_entry_id")
