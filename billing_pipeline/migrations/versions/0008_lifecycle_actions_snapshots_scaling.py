"""Lifecycle on a real API server's terms: action states, snapshots, staged scale-to-zero.

* ``accounts.volume_policy`` gains ``snapshot``; ``accounts.scale_to_zero_after_hours`` (null: off)
  stages the suspension: after that many hours of grace the Deployments are scaled to zero.
* ``lifecycle_actions``: the current state of each cluster action (``pending``, ``done``,
  ``failed``) with its last error, so that ``billing status`` tells what the cluster is. The
  append-only ``lifecycle_events`` keep the history; this table is the latest word per action.
* ``lifecycle_saved_ingresses.spec_text``: the Ingress spec exactly as the API server returned it
  (text, not jsonb, so it is restored byte-identical); ``suspension_service`` names the Service
  its backends point to while suspended.
* ``lifecycle_snapshots``: the CSI VolumeSnapshot taken of each PVC before it is deleted under
  ``volume_policy=snapshot``, its readiness and its retention.
* ``lifecycle_saved_scales``: replica counts saved before a Deployment is scaled to zero.

Revision ID: 0008
Revises: 0005 (the lead re-points this at merge, after 0006/0007)
"""

from alembic import op

revision = "0008"
down_revision = "0007_month_end"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE billing.accounts DROP CONSTRAINT IF EXISTS accounts_volume_policy_check;
ALTER TABLE billing.accounts ADD CONSTRAINT accounts_volume_policy_check
    CHECK (volume_policy IN ('delete', 'retain', 'snapshot'));
ALTER TABLE billing.accounts ADD COLUMN scale_to_zero_after_hours integer
    CHECK (scale_to_zero_after_hours >= 0);

ALTER TABLE billing.lifecycle_cleanups DROP CONSTRAINT IF EXISTS lifecycle_cleanups_volume_policy_check;
ALTER TABLE billing.lifecycle_cleanups ADD CONSTRAINT lifecycle_cleanups_volume_policy_check
    CHECK (volume_policy IN ('delete', 'retain', 'snapshot'));

ALTER TABLE billing.lifecycle_saved_ingresses ADD COLUMN spec_text text;
ALTER TABLE billing.lifecycle_saved_ingresses ADD COLUMN suspension_service text;

CREATE TABLE billing.lifecycle_actions (
    action_key      text PRIMARY KEY,
    account_id      text NOT NULL REFERENCES billing.accounts (id),
    deployment_id   text,
    action          text NOT NULL,
    target          jsonb NOT NULL DEFAULT '{}'::jsonb,
    state           text NOT NULL CHECK (state IN ('pending', 'done', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    last_error      text,
    last_status     integer,
    last_attempt_at timestamptz,
    done_at         timestamptz,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX lifecycle_actions_account_idx ON billing.lifecycle_actions (account_id, state);

CREATE TABLE billing.lifecycle_snapshots (
    namespace       text NOT NULL,
    snapshot_name   text NOT NULL,
    pvc             text NOT NULL,
    deployment_id   text NOT NULL REFERENCES billing.lifecycle_cleanups (deployment_id),
    account_id      text NOT NULL REFERENCES billing.accounts (id),
    snapshot_class  text,
    size_bytes      numeric,
    status          text NOT NULL CHECK (status IN ('planned', 'created', 'ready', 'failed', 'deleted')),
    planned_at      timestamptz NOT NULL,
    created_at      timestamptz,
    ready_at        timestamptz,
    delete_after    timestamptz,
    deleted_at      timestamptz,
    last_error      text,
    PRIMARY KEY (namespace, snapshot_name),
    UNIQUE (deployment_id, namespace, pvc)
);

CREATE TABLE billing.lifecycle_saved_scales (
    namespace     text NOT NULL,
    name          text NOT NULL,
    account_id    text NOT NULL REFERENCES billing.accounts (id),
    deployment_id text NOT NULL,
    episode       integer NOT NULL,
    replicas      integer NOT NULL,
    status        text NOT NULL CHECK (status IN ('saved', 'scaled', 'restored', 'gone')),
    saved_at      timestamptz NOT NULL,
    scaled_at     timestamptz,
    restored_at   timestamptz,
    PRIMARY KEY (namespace, name)
);
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute("""
DROP TABLE billing.lifecycle_saved_scales, billing.lifecycle_snapshots, billing.lifecycle_actions;
ALTER TABLE billing.lifecycle_saved_ingresses DROP COLUMN suspension_service, DROP COLUMN spec_text;
ALTER TABLE billing.lifecycle_cleanups DROP CONSTRAINT lifecycle_cleanups_volume_policy_check;
ALTER TABLE billing.lifecycle_cleanups ADD CONSTRAINT lifecycle_cleanups_volume_policy_check
    CHECK (volume_policy IN ('delete', 'retain'));
ALTER TABLE billing.accounts DROP COLUMN scale_to_zero_after_hours;
ALTER TABLE billing.accounts DROP CONSTRAINT accounts_volume_policy_check;
ALTER TABLE billing.accounts ADD CONSTRAINT accounts_volume_policy_check
    CHECK (volume_policy IN ('delete', 'retain'));
""")
