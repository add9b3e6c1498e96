"""Indexes that keep an hour's cost flat with a year of history (bench/cycle_bench.py --growth).

* ``machine_rental_hours (hour, node_name)``: pricing looks up who rents a node in an hour for
  each usage row (int_workload_usage_reconciled); without it the lookup reads the hour's every
  rental, and before it the whole rental history was aggregated every hour.
* ``credit_transactions (created_at) WHERE type IN (...)``: the invoice lines read the ledger's
  top-ups, SLA credits, adjustments and reversals, a few rows among millions of usage
  deductions; the predicate was the one the old estimate model (fct_invoice_lines before
  migration 0010; now fct_unbilled_usage, which no longer reads the ledger) filtered on.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
CREATE INDEX machine_rental_hours_node_idx ON billing.machine_rental_hours (hour, node_name);
CREATE INDEX credit_transactions_non_usage_idx ON billing.credit_transactions (created_at)
    WHERE type IN ('topup', 'auto_topup', 'sla_credit', 'admin_adjustment', 'reversal');
""")


def downgrade() -> None:
    op.execute("""
DROP INDEX billing.credit_transactions_non_usage_idx;
DROP INDEX billing.machine_rental_hours_node_idx;
""")
