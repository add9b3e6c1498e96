"""One reading of a ledger entry's usage hour, beside the one reading of its period; one runway formula (issue 21).

* ``billing.runway_hours(available, burn_rate_per_hour)``: the one runway formula, called by the
  balances mart and by the short-runway alerts (they differed: one gave 0 for an empty balance).
* ``billing.ledger_entry_usage_hour(type, reference)``: the hour a usage deduction or its
  reversal settles (``reference ->> 'hour'`` of an entry whose reference names a
  ``usage_kind``), as timestamptz; null for every other entry. Text without an offset is UTC
  (as ``core.hours.Hour.parse`` reads it), whatever the session's time zone.
* ``billing.ledger_entry_period`` (migration 0007) is redefined on top of it: the month of the
  usage hour, the measured month of an SLA credit, else the month of ``created_at`` (UTC). Its
  fast path (the hour as the settlement spells it, ``Hour.text``: no parsing) gives the same
  month; any other spelling now goes through the usage-hour function instead of a cast of its
  own, so the two can never disagree.

Every reader (``billing explain``, invoices, the invoice document, the dbt staging model of the
ledger and so the marts, the settlement's check) calls these two; their Python twins are
``billing_pipeline.ledger.keys.usage_hour`` and ``entry_period``.

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

UPGRADE = r"""
-- Runway: how many hours a balance lasts at a burn rate, 2 places; 0 when nothing is available,
-- null when nothing is burning. The one formula: fct_account_balances and the short-runway
-- alerts both call it.
CREATE FUNCTION billing.runway_hours(available numeric, burn_rate_per_hour numeric)
RETURNS numeric LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN available <= 0 THEN 0
        WHEN burn_rate_per_hour > 0 THEN round(available / burn_rate_per_hour, 2)
    END
$$;

CREATE FUNCTION billing.ledger_entry_usage_hour(entry_type text, reference jsonb)
RETURNS timestamptz LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN entry_type IN ('usage_deduction', 'reversal') AND reference ? 'usage_kind'
             AND reference ->> 'hour' ~ '^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}'
            THEN CASE WHEN reference ->> 'hour' ~ '(Z|[+-]\d{2}(:?\d{2})?)$'
                      THEN (reference ->> 'hour')::timestamptz
                      ELSE (reference ->> 'hour')::timestamp AT TIME ZONE 'UTC' END
    END
$$;

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
        ELSE (date_trunc('month', created_at, 'UTC') AT TIME ZONE 'UTC')::date
    END
$$;
"""

DOWNGRADE = r"""
CREATE OR REPLACE FUNCTION billing.ledger_entry_period(entry_type text, reference jsonb, created_at timestamptz)
RETURNS date LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN entry_type IN ('usage_deduction', 'reversal') AND reference ? 'usage_kind'
             AND reference ->> 'hour' LIKE '____-__-__T__:__:__+00:00'
            THEN (left(reference ->> 'hour', 7) || '-01')::date
        WHEN entry_type IN ('usage_deduction', 'reversal') AND reference ? 'usage_kind'
             AND reference ->> 'hour' ~ '^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}'
            THEN (date_trunc('month', (reference ->> 'hour')::timestamptz, 'UTC') AT TIME ZONE 'UTC')::date
        WHEN entry_type = 'sla_credit' AND reference ->> 'month' ~ '^\d{4}-\d{2}$'
            THEN ((reference ->> 'month') || '-01')::date
        ELSE (date_trunc('month', created_at, 'UTC') AT TIME ZONE 'UTC')::date
    END
$$;
DROP FUNCTION billing.ledger_entry_usage_hour(text, jsonb);
DROP FUNCTION billing.runway_hours(numeric, numeric);
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
