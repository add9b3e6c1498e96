"""Account lifecycle: persisted state, grace deadlines and the append-only lifecycle_events log.

* ``account_lifecycle``: one row per account (state, grace deadline, grace episode, number of
  transitions recorded); locked FOR UPDATE while an account is evaluated.
* ``lifecycle_events``: every transition and every cluster action, append-only (a trigger refuses
  UPDATE, DELETE and TRUNCATE); ``event_key`` is unique, so a re-run never records one twice.
* ``lifecycle_saved_ingresses``: the exact Ingress rules removed on entering grace, restored on
  recovery.
* ``lifecycle_cleanups`` / ``lifecycle_cleanup_objects``: the cleanup plan of each deployment and
  the progress of each object, so that an interrupted cleanup completes on the next run.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE billing.account_lifecycle (
    account_id     text PRIMARY KEY REFERENCES billing.accounts (id),
    state          text NOT NULL CHECK (state IN ('healthy', 'low_balance', 'grace_period', 'expired')),
    entered_at     timestamptz NOT NULL,
    grace_deadline timestamptz,
    episode        integer NOT NULL DEFAULT 0 CHECK (episode >= 0),
    transitions    integer NOT NULL DEFAULT 0 CHECK (transitions >= 0),
    last_balance   numeric(20, 6),
    evaluated_at   timestamptz NOT NULL,
    CONSTRAINT grace_has_deadline CHECK (state NOT IN ('grace_period', 'expired') OR grace_deadline IS NOT NULL)
);

CREATE TABLE billing.lifecycle_events (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_key     text NOT NULL UNIQUE,
    account_id    text NOT NULL REFERENCES billing.accounts (id),
    deployment_id text,
    kind          text NOT NULL CHECK (kind IN ('transition', 'cluster_call', 'domains', 'notice',
                                                 'cleanup', 'guard', 'dry_run')),
    action        text NOT NULL,
    from_state    text,
    to_state      text,
    target        jsonb NOT NULL DEFAULT '{}'::jsonb,
    outcome       text NOT NULL CHECK (outcome IN ('done', 'already_absent', 'failed', 'refused',
                                                    'would_do', 'skipped')),
    detail        jsonb NOT NULL DEFAULT '{}'::jsonb,
    decided_at    timestamptz NOT NULL,
    recorded_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX lifecycle_events_account_idx ON billing.lifecycle_events (account_id, id);

COMMENT ON TABLE billing.lifecycle_events IS
    'Append-only audit of lifecycle transitions and cluster actions; UPDATE, DELETE and TRUNCATE are refused.';

CREATE TRIGGER lifecycle_events_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON billing.lifecycle_events
    FOR EACH STATEMENT EXECUTE FUNCTION billing.refuse_append_only_change(
        'Record a new event instead of editing the audit trail.');

REVOKE UPDATE, DELETE, TRUNCATE ON billing.lifecycle_events FROM PUBLIC;

-- The Ingress routing saved on entering grace, exactly as the API server returned it.
-- One row per Ingress: a new grace period overwrites it only once the last one was restored,
-- so rules already removed are never saved in place of the originals.
CREATE TABLE billing.lifecycle_saved_ingresses (
    namespace             text NOT NULL,
    name                  text NOT NULL,
    account_id            text NOT NULL REFERENCES billing.accounts (id),
    deployment_id         text NOT NULL,
    episode               integer NOT NULL,
    has_rules             boolean NOT NULL,
    rules                 jsonb,
    has_default_backend   boolean NOT NULL,
    default_backend       jsonb,
    status                text NOT NULL CHECK (status IN ('saved', 'disabled', 'restored', 'gone')),
    saved_at              timestamptz NOT NULL,
    disabled_at           timestamptz,
    restored_at           timestamptz,
    PRIMARY KEY (namespace, name)
);
CREATE INDEX lifecycle_saved_ingresses_account_idx ON billing.lifecycle_saved_ingresses (account_id, status);

-- A deployment's cleanup: started at expiry (or early, when idle), finished when every object
-- is gone. PVCs kept under volume_policy=retain wait until volumes_delete_after.
CREATE TABLE billing.lifecycle_cleanups (
    deployment_id        text PRIMARY KEY REFERENCES billing.deployments (id),
    account_id           text NOT NULL REFERENCES billing.accounts (id),
    namespace            text NOT NULL,
    name                 text NOT NULL,
    reason               text NOT NULL CHECK (reason IN ('expired', 'idle')),
    episode              integer NOT NULL,
    volume_policy        text NOT NULL CHECK (volume_policy IN ('delete', 'retain')),
    volumes_delete_after timestamptz NOT NULL,
    started_at           timestamptz NOT NULL,
    workload_done_at     timestamptz,
    volumes_done_at      timestamptz,
    domains_released_at  timestamptz,
    cancelled_at         timestamptz,
    cancel_reason        text
);
CREATE INDEX lifecycle_cleanups_account_idx ON billing.lifecycle_cleanups (account_id);

CREATE TABLE billing.lifecycle_cleanup_objects (
    deployment_id text NOT NULL REFERENCES billing.lifecycle_cleanups (deployment_id),
    kind          text NOT NULL,
    namespace     text NOT NULL,
    name          text NOT NULL,
    found_by      text NOT NULL CHECK (found_by IN ('label', 'legacy_name')),
    uid           text,
    size_bytes    numeric,
    status        text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'deleted', 'already_absent', 'kept')),
    attempts      integer NOT NULL DEFAULT 0,
    last_error    text,
    planned_at    timestamptz NOT NULL,
    done_at       timestamptz,
    PRIMARY KEY (deployment_id, kind, namespace, name)
);
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(
        "DROP TABLE billing.lifecycle_cleanup_objects, billing.lifecycle_cleanups, "
        "billing.lifecycle_saved_ingresses, billing.lifecycle_events, billing.account_lifecycle"
    )
