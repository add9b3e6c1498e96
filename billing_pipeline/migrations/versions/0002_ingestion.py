"""Ingested hourly usage: pod metrics from Prometheus, machine-hours from rentals, quarantine.

These tables are the interface between the ingestion assets (which replace one hour at a time)
and the dbt sources. Quantities are exact decimals computed from Prometheus' aggregates.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UPGRADE = """
-- One row per container and hour: consumption and request side by side, so that the
-- max(request, usage) basis can be taken per container (the OpenCost rule).
CREATE TABLE billing.metric_container_hours (
    hour                      timestamptz NOT NULL,
    namespace                 text NOT NULL,
    pod                       text NOT NULL,
    container                 text NOT NULL,
    node                      text,
    deployment_id             text,
    account_id                text,
    attribution               text NOT NULL CHECK (attribution IN ('label', 'owner_chain', 'unattributed')),
    present_minutes           integer NOT NULL CHECK (present_minutes BETWEEN 0 AND 60),
    cpu_usage_core_hours      numeric NOT NULL DEFAULT 0,
    cpu_request_core_hours    numeric NOT NULL DEFAULT 0,
    memory_usage_gib_hours    numeric NOT NULL DEFAULT 0,
    memory_request_gib_hours  numeric NOT NULL DEFAULT 0,
    gpu_request_hours         numeric NOT NULL DEFAULT 0,
    attribution_note          text,  -- why a row is unattributed (or how it was attributed)
    PRIMARY KEY (hour, namespace, pod, container)
);
CREATE INDEX metric_container_hours_deployment_idx ON billing.metric_container_hours (deployment_id, hour);

-- Egress is only exposed per pod (cAdvisor's network counters have no container).
CREATE TABLE billing.metric_pod_network_hours (
    hour          timestamptz NOT NULL,
    namespace     text NOT NULL,
    pod           text NOT NULL,
    node          text,
    deployment_id text,
    account_id    text,
    attribution   text NOT NULL CHECK (attribution IN ('label', 'owner_chain', 'unattributed')),
    egress_gib    numeric NOT NULL DEFAULT 0,
    attribution_note text,
    PRIMARY KEY (hour, namespace, pod)
);

CREATE TABLE billing.metric_volume_hours (
    hour                  timestamptz NOT NULL,
    namespace             text NOT NULL,
    persistentvolumeclaim text NOT NULL,
    deployment_id         text,
    account_id            text,
    attribution           text NOT NULL CHECK (attribution IN ('label', 'owner_chain', 'unattributed')),
    requested_bytes       numeric NOT NULL DEFAULT 0,
    storage_gib_hours     numeric NOT NULL DEFAULT 0,
    attribution_note      text,
    PRIMARY KEY (hour, namespace, persistentvolumeclaim)
);

-- Completeness of each ingested hour: billed only once complete, or as an explicit estimate.
CREATE TABLE billing.metric_hours (
    hour           timestamptz PRIMARY KEY,
    complete       boolean NOT NULL,
    problems       jsonb NOT NULL DEFAULT '[]'::jsonb,
    prometheus_url text,
    series         jsonb NOT NULL DEFAULT '{}'::jsonb,
    ingested_at    timestamptz NOT NULL DEFAULT now()
);

-- Machine rentals sliced into UTC hours, seconds prorated; ongoing rentals up to "now".
CREATE TABLE billing.machine_rental_hours (
    hour             timestamptz NOT NULL,
    machine_usage_id text NOT NULL,
    account_id       text NOT NULL,
    machine_id       text NOT NULL,
    machine_type     text NOT NULL,
    node_name        text NOT NULL,
    rented_seconds   numeric NOT NULL CHECK (rented_seconds > 0 AND rented_seconds <= 3600),
    machine_hours    numeric NOT NULL,
    is_ongoing       boolean NOT NULL,
    source_updated_at timestamptz NOT NULL,
    PRIMARY KEY (hour, machine_usage_id)
);
CREATE INDEX machine_rental_hours_account_idx ON billing.machine_rental_hours (account_id, hour);
CREATE INDEX machine_rental_hours_usage_idx ON billing.machine_rental_hours (machine_usage_id);

-- Which hours have been sliced, with the clock ("now") used for ongoing rentals and the wall
-- time of the slicing: how corrected rentals (updated_at later than sliced_at) and provisional
-- slices of a not yet finished hour are found and re-sliced.
CREATE TABLE billing.machine_rental_slicings (
    hour      timestamptz PRIMARY KEY,
    clock     timestamptz NOT NULL,
    sliced_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    rentals   integer NOT NULL
);

-- Rows that cannot be billed as they stand, kept with a reason a person can read.
CREATE TABLE billing.quarantined_rows (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source_table  text NOT NULL,
    source_id     text NOT NULL,
    reason        text NOT NULL,
    row_data      jsonb NOT NULL,
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    resolved_at   timestamptz,
    CONSTRAINT quarantined_rows_once UNIQUE (source_table, source_id, reason)
);
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(
        "DROP TABLE billing.quarantined_rows, billing.machine_rental_slicings, billing.machine_rental_hours, billing.metric_hours, "
        "billing.metric_volume_hours, billing.metric_pod_network_hours, billing.metric_container_hours"
    )
