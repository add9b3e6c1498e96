"""Notifications outbox and deliveries, balance alert crossings, Stripe top-up attempts.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UPGRADE = """
-- Transactional outbox: a notification is queued in the same transaction as the decision that
-- causes it (a crossing, a failed top-up, a lifecycle transition), under a unique dedupe key,
-- so a decision re-taken by a second run queues nothing more.
CREATE TABLE billing.notification_outbox (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id  text NOT NULL REFERENCES billing.accounts (id),
    kind        text NOT NULL,
    dedupe_key  text NOT NULL UNIQUE,
    subject     text NOT NULL,
    body        text NOT NULL,
    payload     jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notification_outbox_account_idx ON billing.notification_outbox (account_id, created_at);

-- One row per notification and channel. A delivered channel is never sent again; a failed one
-- is retried at next_attempt_at with exponential backoff. The recipient is resolved when the
-- notification is queued (the address in force at the time of the decision).
CREATE TABLE billing.notification_deliveries (
    notification_id bigint NOT NULL REFERENCES billing.notification_outbox (id),
    channel         text NOT NULL CHECK (channel IN ('email', 'webhook')),
    target          text NOT NULL,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    last_error      text,
    PRIMARY KEY (notification_id, channel)
);
CREATE INDEX notification_deliveries_due_idx ON billing.notification_deliveries (next_attempt_at)
    WHERE status = 'pending';

-- A crossing opens when an account enters a warning condition and closes (recovered_at) when it
-- leaves it. At most one open crossing per account and kind: that unique index is what makes
-- the warning "once per crossing" even for two alert runs at the same time.
CREATE TABLE billing.balance_alert_crossings (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id    text NOT NULL REFERENCES billing.accounts (id),
    kind          text NOT NULL CHECK (kind IN ('low_balance', 'short_runway')),
    crossing_no   integer NOT NULL,
    opened_at     timestamptz NOT NULL,
    balance       numeric(20, 6) NOT NULL,
    threshold     numeric(20, 6),
    runway_hours  numeric,
    recovered_at  timestamptz,
    recovered_balance numeric(20, 6),
    UNIQUE (account_id, kind, crossing_no)
);
CREATE UNIQUE INDEX balance_alert_crossings_open_idx ON billing.balance_alert_crossings (account_id, kind)
    WHERE recovered_at IS NULL;

-- Stripe auto top-up attempts. The row (and its attempt_key, also Stripe's idempotency key and
-- PaymentIntent metadata) is committed before Stripe is called, so a run that dies after Stripe
-- answered leaves a trace the next run resolves instead of charging again.
CREATE TABLE billing.topup_attempts (
    id                       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id               text NOT NULL REFERENCES billing.accounts (id),
    attempt_key              text NOT NULL UNIQUE,
    attempt_no               integer NOT NULL,
    amount                   numeric(20, 6) NOT NULL CHECK (amount > 0),
    month                    date NOT NULL,
    stripe_customer_id       text NOT NULL,
    stripe_payment_method_id text NOT NULL,
    status                   text NOT NULL DEFAULT 'pending'
                             CHECK (status IN ('pending', 'succeeded', 'failed')),
    payment_intent_id        text,
    failure_code             text,
    failure_message          text,
    ledger_entry_id          bigint REFERENCES billing.credit_transactions (id),
    created_at               timestamptz NOT NULL,
    resolved_at              timestamptz,
    UNIQUE (account_id, attempt_no)
);
-- One unresolved attempt per account at a time.
CREATE UNIQUE INDEX topup_attempts_one_pending_idx ON billing.topup_attempts (account_id)
    WHERE status = 'pending';
CREATE INDEX topup_attempts_month_idx ON billing.topup_attempts (account_id, month);

-- Auto top-up pause: after 3 failures in a row, paused on the payment method that failed;
-- a different saved payment method lifts it.
CREATE TABLE billing.topup_pauses (
    id                       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id               text NOT NULL REFERENCES billing.accounts (id),
    stripe_payment_method_id text NOT NULL,
    paused_at                timestamptz NOT NULL,
    last_attempt_id          bigint NOT NULL REFERENCES billing.topup_attempts (id),
    lifted_at                timestamptz,
    UNIQUE (account_id, last_attempt_id)
);

-- Settling usage reads what was already posted per account, hour and usage kind from the
-- ledger itself (no second source of truth); this index makes that read cheap.
CREATE INDEX credit_transactions_usage_hour_idx ON billing.credit_transactions
    ((reference ->> 'hour'), account_id)
    WHERE type IN ('usage_deduction', 'reversal') AND reference ? 'usage_kind';
"""

DOWNGRADE = """
DROP INDEX IF EXISTS billing.credit_transactions_usage_hour_idx;
DROP TABLE IF EXISTS billing.topup_pauses, billing.topup_attempts, billing.balance_alert_crossings,
    billing.notification_deliveries, billing.notification_outbox;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
