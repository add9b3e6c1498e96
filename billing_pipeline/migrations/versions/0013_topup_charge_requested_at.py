"""When an auto top-up attempt's charge was last sent to Stripe (issue 21, point 5).

A pending attempt that Stripe does not know yet is charged again only once its last request can
no longer be in flight: ``charge_requested_at`` plus the Stripe client's timeout and a margin
(``payments.topup.IN_FLIGHT_WINDOW``). The first request is sent right after the attempt is
committed, so the column starts as ``created_at``; a recovery run that charges again moves it
(committed before the request), so a run killed during that request is not repeated either.
Rows written before this migration keep NULL and are read as ``created_at``.

Revision ID: 0013
Revises: 0009
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE billing.topup_attempts ADD COLUMN charge_requested_at timestamptz")


def downgrade() -> None:
    op.execute("ALTER TABLE billing.topup_attempts DROP COLUMN charge_requested_at")
