"""Month-end: probe availability, SLA credits and immutable invoices (docs/rules/ingestion.md, month-end.md).

* ``probe_deployment_hours``: per deployment and UTC hour, the minutes measured and down by
  ``probe_success`` (and each minute's state), written one hour at a time by the probe ingestion;
  ``probe_hours``: completeness of each ingested hour.
* ``sla_credit_tiers``: the credit tiers as data (the defaults of docs/rules/month-end.md are inserted here).
* ``sla_measurements``: the availability of each deployment and month as the SLA credit job
  measured it; append-only (the measurement a credit was paid on never changes).
* ``invoices``, ``invoice_lines``, ``invoice_line_details``, ``invoice_entries``: issued invoices,
  append-only like the ledger (the same trigger function). ``invoice_entries`` holds each ledger
  entry once (its primary key): an entry lands on exactly one invoice.
* ``invoice_number_counter``: one row, locked FOR UPDATE by the issuing transaction, so numbers
  are gapless across all accounts and assigned in issue order even when two closes run at once.
* ``ledger_entry_period(type, reference, created_at)``: the one definition of an entry's period.

Revision ID: 0007_month_end
Revises: 0005 (re-point to 0006 when the ledger key-id migration is merged)
"""

from alembic import op

revision = "0007_month_end"
# Re-point to "0006" at merge (issue 11's ledger key-id migration); nothing here depends on it.
down_revision = "0006"
branch_labels = None
depends_on = None

UPGRADE = """
-- ---------------------------------------------------------------- probes (docs/rules/ingestion.md)
CREATE TABLE billing.probe_deployment_hours (
    hour             timestamptz NOT NULL,
    deployment_id    text NOT NULL,
    measured_minutes integer NOT NULL CHECK (measured_minutes BETWEEN 0 AND 60),
    down_minutes     integer NOT NULL CHECK (down_minutes BETWEEN 0 AND measured_minutes),
    -- minute k of the hour: 'u' up (a sample > 0), 'd' down (every sample 0), '.' no sample
    minute_states    text NOT NULL CHECK (length(minute_states) = 60 AND minute_states ~ '^[ud.]+$'),
    PRIMARY KEY (hour, deployment_id)
);
CREATE INDEX probe_deployment_hours_deployment_idx ON billing.probe_deployment_hours (deployment_id, hour);

CREATE TABLE billing.probe_hours (
    hour           timestamptz PRIMARY KEY,
    complete       boolean NOT NULL,
    problems       jsonb NOT NULL DEFAULT '[]'::jsonb,
    prometheus_url text,
    deployments    integer NOT NULL DEFAULT 0,
    ingested_at    timestamptz NOT NULL DEFAULT now()
);

-- ---------------------------------------------------------------- SLA credits (docs/rules/month-end.md)
CREATE TABLE billing.sla_credit_tiers (
    id                 text PRIMARY KEY,
    below_availability numeric(9, 6) NOT NULL UNIQUE CHECK (below_availability > 0 AND below_availability <= 1),
    credit_share       numeric(9, 6) NOT NULL CHECK (credit_share > 0 AND credit_share <= 1),
    description        text
);
INSERT INTO billing.sla_credit_tiers (id, below_availability, credit_share, description) VALUES
    ('below_99_9', 0.999, 0.10, 'availability below 99.9%: 10% of the month''s workload consumption'),
    ('below_99',   0.990, 0.25, 'availability below 99%: 25% of the month''s workload consumption'),
    ('below_95',   0.950, 0.50, 'availability below 95%: 50% of the month''s workload consumption');

CREATE TABLE billing.sla_measurements (
    deployment_id      text NOT NULL,
    month              date NOT NULL CHECK (extract(day FROM month) = 1),
    account_id         text NOT NULL,
    existed_minutes    integer NOT NULL,   -- minutes of the month the deployment existed
    excluded_minutes   integer NOT NULL,   -- of those, minutes its account was in grace_period or expired
    eligible_minutes   integer NOT NULL,   -- existed - excluded
    measured_minutes   integer NOT NULL,
    down_minutes       integer NOT NULL,
    unmeasured_minutes integer NOT NULL,   -- eligible minutes with no probe sample: shown, never down
    availability       numeric,            -- (measured - down) / measured; null when nothing was measured
    tier_id            text,
    credit_share       numeric(9, 6),
    base_amount        numeric NOT NULL,   -- the month's workload consumption (fct_priced_usage)
    credit_amount      numeric NOT NULL DEFAULT 0,  -- base x share, exact; posted rounded half-even by the ledger
    outcome            text NOT NULL CHECK (outcome IN ('credit', 'met', 'no_measurement', 'no_base')),
    idempotency_key    text NOT NULL UNIQUE,
    measured_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (deployment_id, month)
);

-- ---------------------------------------------------------------- invoices (docs/rules/month-end.md)
-- An entry's period: the month of its usage hour (usage deductions and their reversals), the
-- measured month (SLA credits), else the month of its created_at. Migration 0010 rebuilds it on
-- billing.ledger_entry_usage_hour; the invoice job, `billing explain` and the ledger's dbt
-- staging model (so the marts) all read it.
-- The usage hour is read as the deduction writes it (UTC, ISO 8601, '+00:00') without parsing
-- a timestamp (this runs for every entry at month-end); any other spelling is parsed.
CREATE FUNCTION billing.ledger_entry_period(entry_type text, reference jsonb, created_at timestamptz)
RETURNS date LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN entry_type IN ('usage_deduction', 'reversal') AND reference ? 'usage_kind'
             AND reference ->> 'hour' LIKE '____-__-__T__:__:__+00:00'
            THEN (left(reference ->> 'hour', 7) || '-01')::date
        WHEN entry_type IN ('usage_deduction', 'reversal') AND reference ? 'usage_kind'
             AND reference ->> 'hour' ~ '^\\d{4}-\\d{2}-\\d{2}[T ]\\d{2}:\\d{2}'
            THEN (date_trunc('month', (reference ->> 'hour')::timestamptz, 'UTC') AT TIME ZONE 'UTC')::date
        WHEN entry_type = 'sla_credit' AND reference ->> 'month' ~ '^\\d{4}-\\d{2}$'
            THEN ((reference ->> 'month') || '-01')::date
        ELSE (date_trunc('month', created_at, 'UTC') AT TIME ZONE 'UTC')::date
    END
$$;

CREATE TABLE billing.invoice_number_counter (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_number bigint NOT NULL DEFAULT 0 CHECK (last_number >= 0)
);
INSERT INTO billing.invoice_number_counter (singleton, last_number) VALUES (true, 0);

CREATE TABLE billing.invoices (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    number              bigint NOT NULL UNIQUE CHECK (number > 0),
    invoice_number      text GENERATED ALWAYS AS ('SAT-' || lpad(number::text, 8, '0')) STORED,
    account_id          text NOT NULL REFERENCES billing.accounts (id),
    period_month        date NOT NULL CHECK (extract(day FROM period_month) = 1),
    status              text NOT NULL DEFAULT 'issued' CHECK (status = 'issued'),
    opening_balance     numeric(20, 6) NOT NULL,
    total               numeric(20, 6) NOT NULL,
    closing_balance     numeric(20, 6) NOT NULL,
    previous_invoice_id bigint REFERENCES billing.invoices (id),
    unbilled_hours      jsonb NOT NULL DEFAULT '[]'::jsonb,
    unbilled_hour_count integer NOT NULL DEFAULT 0,
    chain_head_entry_id bigint,
    chain_head_seq      bigint,
    chain_head_hash     text,
    close_id            text NOT NULL,
    issued_at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT invoices_one_per_account_month UNIQUE (account_id, period_month),
    CONSTRAINT invoices_closing_is_opening_plus_lines CHECK (closing_balance = opening_balance + total)
);

CREATE TABLE billing.invoice_lines (
    invoice_id       bigint NOT NULL REFERENCES billing.invoices (id),
    line_no          integer NOT NULL,
    line_type        text NOT NULL CHECK (line_type IN ('usage', 'topup', 'auto_topup', 'sla_credit',
                                                        'admin_adjustment', 'reversal')),
    usage_kind       text,
    period_month     date NOT NULL,
    prior_period     boolean NOT NULL,
    description      text NOT NULL,
    amount           numeric(20, 6) NOT NULL,
    ledger_entry_ids bigint[] NOT NULL CHECK (cardinality(ledger_entry_ids) > 0),
    detail           jsonb NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (invoice_id, line_no)
);

-- Resource detail shown beneath the usage lines (quantities, unit prices): not summed.
CREATE TABLE billing.invoice_line_details (
    invoice_id   bigint NOT NULL REFERENCES billing.invoices (id),
    usage_kind   text NOT NULL,
    resource     text NOT NULL,
    machine_type text,
    unit         text NOT NULL,
    unit_price   numeric NOT NULL,
    quantity     numeric NOT NULL,
    covered_quantity numeric NOT NULL DEFAULT 0,
    amount       numeric NOT NULL
);
CREATE INDEX invoice_line_details_invoice_idx ON billing.invoice_line_details (invoice_id);

-- One row per invoiced ledger entry (millions a month): no foreign keys, whose per-row triggers
-- would double the cost of issuing; rows are written only by the issuing transaction, from the
-- lines it writes, and the lines' ledger_entry_ids say the same (the invoice's document reads those).
CREATE TABLE billing.invoice_entries (
    ledger_entry_id bigint PRIMARY KEY,
    invoice_id      bigint NOT NULL,
    line_no         integer NOT NULL
);
"""

APPEND_ONLY = [
    ("sla_measurements", "A measurement that paid a credit never changes; correct it with an adjustment entry."),
    ("invoices", "An issued invoice never changes; corrections go on the next invoice."),
    ("invoice_lines", "An issued invoice never changes; corrections go on the next invoice."),
    ("invoice_line_details", "An issued invoice never changes; corrections go on the next invoice."),
    ("invoice_entries", "An issued invoice never changes; corrections go on the next invoice."),
]


def upgrade() -> None:
    op.execute(UPGRADE)
    for table, hint in APPEND_ONLY:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON billing.{table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION billing.refuse_append_only_change('{hint.replace(chr(39), chr(39) * 2)}');"
            f"REVOKE UPDATE, DELETE, TRUNCATE ON billing.{table} FROM PUBLIC;"
        )


def downgrade() -> None:
    op.execute(
        "DROP TABLE billing.invoice_entries, billing.invoice_line_details, billing.invoice_lines, "
        "billing.invoices, billing.invoice_number_counter, billing.sla_measurements, billing.sla_credit_tiers, "
        "billing.probe_hours, billing.probe_deployment_hours; "
        "DROP FUNCTION billing.ledger_entry_period(text, jsonb, timestamptz);"
    )
