"""Volume snapshots, staged scale-to-zero and the truth of `billing status`, against the
validating emulator through the official client."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta, timezone

import psycopg

from billing_pipeline.cli.status import render_status
from billing_pipeline.lifecycle.report import lifecycle_status
from billing_pipeline.lifecycle.snapshots import snapshot_name
from tests.support.kube import (
    add_deployment,
    cluster,
    events,
    kube,
    outbox,
    run,
    seed_deployment,
    set_account,
    set_balance,
)
from tests.support.platform import create_accounts

T0 = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)
SNAP = snapshot_name("dep-web", "data-pg-0")


def _status(url, now):
    with psycopg.connect(url) as conn:
        data = lifecycle_status(conn, "acme", now)
    return data, render_status(data)


def _account(db_url, kube, **fields):
    create_accounts(db_url, "acme")
    set_account(db_url, "acme", **fields)
    add_deployment(db_url, "dep-web", "acme", "acme-prod", "web", hosts=["web.acme.test"])
    seed_deployment(kube, "acme-prod", "web", "dep-web", "acme", pvcs={"data-pg-0": "20Gi"})
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO billing.metric_volume_hours (hour, namespace, persistentvolumeclaim, deployment_id, "
            "account_id, attribution, requested_bytes) VALUES (%s, 'acme-prod', 'data-pg-0', 'dep-web', "
            "'acme', 'label', %s)",
            (T0 - timedelta(hours=1), 20 * 2**30),
        )


def test_snapshot_policy_keeps_the_pvc_until_the_snapshot_is_ready_then_expires_the_snapshot(db_url, kube, cluster):
    _account(db_url, kube, grace_period_hours=1, volume_policy="snapshot", volume_retention_days=7)
    set_balance(db_url, "acme", -1)
    assert run(db_url, cluster, T0).errors == []
    _, text = _status(db_url, T0)
    assert (
        "PVC data-pg-0 (20 GiB) will be captured on 2026-11-25 15:00 UTC as a CSI VolumeSnapshot (the cluster's "
        "default VolumeSnapshotClass); the PVC is deleted with its data only once the snapshot is ready to use, "
        "and the snapshot is kept 7 days after that, then deleted with its data."
    ) in text
    grace_notice = outbox(db_url, "acme")[0][3]
    assert "captured on 2026-11-25 15:00 UTC as a CSI VolumeSnapshot" in grace_notice

    kube.set_snapshot_mode("pending")
    assert run(db_url, cluster, T0 + timedelta(hours=1)).errors == []  # expiry: snapshot taken, not ready
    snap = kube.get("VolumeSnapshot", "acme-prod", SNAP)
    assert snap["spec"]["source"] == {"persistentVolumeClaimName": "data-pg-0"}
    assert snap["metadata"]["labels"]["satusky.io/deployment-id"] == "dep-web"
    assert kube.get("Deployment", "acme-prod", "web") is None
    assert kube.get("PersistentVolumeClaim", "acme-prod", "data-pg-0") is not None  # held: not ready
    data, text = _status(db_url, T0 + timedelta(hours=1))
    assert (
        f"PVC data-pg-0 (20 GiB) is kept with its data until its VolumeSnapshot acme-prod/{SNAP} is ready to use "
        "(not ready at 2026-11-25 15:00 UTC; checked again every 15 minutes); then the PVC is deleted with its data "
        "and the snapshot kept 7 days."
    ) in text
    assert {a["key"]: a["state"] for a in data["actions"]}["snapshot:acme-prod/data-pg-0"] == "pending"
    assert run(db_url, cluster, T0 + timedelta(hours=1, minutes=15)).errors == []  # still not ready: kept
    assert kube.get("PersistentVolumeClaim", "acme-prod", "data-pg-0") is not None
    assert [c for c in kube.calls if c.method == "POST" and c.kind == "VolumeSnapshot"].__len__() == 1

    kube.set_snapshot_ready("acme-prod", SNAP)
    assert run(db_url, cluster, T0 + timedelta(hours=1, minutes=30)).errors == []
    assert kube.get("PersistentVolumeClaim", "acme-prod", "data-pg-0") is None
    data, text = _status(db_url, T0 + timedelta(hours=2))
    assert (
        f"PVC data-pg-0 (20 GiB) was deleted on 2026-11-25 15:30 UTC after its snapshot was ready; its "
        f"VolumeSnapshot acme-prod/{SNAP} is kept until 2026-12-02 15:30 UTC, then deleted with its data."
    ) in text
    assert data["volumes"][0]["fate"] == "snapshotted"

    assert run(db_url, cluster, T0 + timedelta(days=7, hours=1)).errors == []  # retention not over yet
    assert kube.get("VolumeSnapshot", "acme-prod", SNAP) is not None
    assert run(db_url, cluster, T0 + timedelta(days=7, hours=1, minutes=30)).errors == []
    assert kube.get("VolumeSnapshot", "acme-prod", SNAP) is None
    _, text = _status(db_url, T0 + timedelta(days=8))
    assert "was deleted on 2026-12-02 15:30 UTC at the end of its retention" in text
    deletes = Counter(kube.successful("DELETE"))
    assert max(deletes.values()) == 1 and ("VolumeSnapshot", "acme-prod", SNAP) in deletes


def test_a_failed_snapshot_keeps_the_pvc_with_an_error_a_person_can_act_on(db_url, kube, cluster):
    _account(db_url, kube, grace_period_hours=0, volume_policy="snapshot")
    kube.set_snapshot_mode("error")
    set_balance(db_url, "acme", -1)
    r = run(db_url, cluster, T0)
    assert len(r.errors) == 1 and f"VolumeSnapshot acme-prod/{SNAP} of PVC data-pg-0 failed" in r.errors[0]
    assert f"kubectl -n acme-prod delete volumesnapshot {SNAP}" in r.errors[0]
    assert kube.get("PersistentVolumeClaim", "acme-prod", "data-pg-0") is not None
    data, text = _status(db_url, T0)
    assert "PVC data-pg-0 (20 GiB) is kept with its data: Snapshot failed: " in text
    assert {a["key"]: a["state"] for a in data["actions"]}["snapshot:acme-prod/data-pg-0"] == "failed"
    # The person fixes the class and deletes the failed snapshot: the next run takes a new one.
    kube.set_snapshot_mode("ready")
    cluster.delete("VolumeSnapshot", "acme-prod", SNAP)
    assert run(db_url, cluster, T0 + timedelta(minutes=15)).errors == []
    assert kube.get("PersistentVolumeClaim", "acme-prod", "data-pg-0") is None
    assert kube.get("VolumeSnapshot", "acme-prod", SNAP)["status"]["readyToUse"] is True


def test_staged_scale_to_zero_and_exact_restore(db_url, kube, cluster):
    _account(db_url, kube, grace_period_hours=72, scale_to_zero_after_hours=24)
    dep = kube.get("Deployment", "acme-prod", "web")
    kube.put("Deployment", "acme-prod", "web", labels=dep["metadata"]["labels"], spec={**dep["spec"], "replicas": 3})
    set_balance(db_url, "acme", -1)
    assert run(db_url, cluster, T0).errors == []
    assert kube.get("Deployment", "acme-prod", "web")["spec"]["replicas"] == 3  # not yet
    assert (
        "After 24 hours of grace (2026-11-26 14:00 UTC) your Deployments are scaled to zero"
        in outbox(db_url, "acme")[0][3]
    )
    _, text = _status(db_url, T0 + timedelta(hours=1))
    assert (
        "It will be scaled to zero on 2026-11-26 14:00 UTC (replica counts saved; a top-up restores them exactly)."
        in text
    )
    assert run(db_url, cluster, T0 + timedelta(hours=24)).errors == []
    assert kube.get("Deployment", "acme-prod", "web")["spec"]["replicas"] == 0
    _, text = _status(db_url, T0 + timedelta(hours=25))
    assert (
        "Scaled to zero on 2026-11-26 14:00 UTC; its replica counts are saved and a top-up restores them exactly."
        in text
    )
    assert run(db_url, cluster, T0 + timedelta(hours=25)).errors == []  # a re-run writes nothing
    assert len([c for c in kube.calls if c.method == "PUT" and c.kind == "Deployment"]) == 1
    set_balance(db_url, "acme", 50)
    assert run(db_url, cluster, T0 + timedelta(hours=26)).errors == []
    assert kube.get("Deployment", "acme-prod", "web")["spec"]["replicas"] == 3
    assert "get their saved replica counts back" in outbox(db_url, "acme")[-1][3]
    acts = Counter((e["action"], e["outcome"]) for e in events(db_url, "acme"))
    assert acts[("scale_to_zero", "done")] == 1 and acts[("scale_restore", "done")] == 1


def test_status_shows_a_failed_action_as_failed_never_as_done(db_url, kube, cluster):
    _account(db_url, kube)
    set_balance(db_url, "acme", -1)
    # No cluster configured: decisions are made, routing is not disabled, and status says so.
    r = run(db_url, None, T0)
    assert len(r.errors) == 1 and "no cluster is configured" in r.errors[0]
    data, text = _status(db_url, T0)
    assert "Routing is disabled" not in text
    assert "Routing not yet disabled: no cluster is configured, so nothing was changed on it" in text
    assert "(at 2026-11-25 14:00 UTC, retried every 15 minutes)" in text
    assert [(a["key"], a["state"]) for a in data["actions"]] == [("routing:dep-web", "failed")]
    # A 403 on the Ingress: the error names the call and the object.
    kube.fail("Ingress", "acme-prod", "web", 403, methods={"PUT"})
    assert len(run(db_url, cluster, T0 + timedelta(minutes=15)).errors) == 1
    data, text = _status(db_url, T0 + timedelta(minutes=15))
    assert "Routing not yet disabled: Kubernetes PUT of Ingress acme-prod/web failed with HTTP 403" in text
    assert "(at 2026-11-25 14:15 UTC, retried every 15 minutes)" in text
    action = data["deployments"][0]["actions"][0]
    assert action["state"] == "failed" and action["http_status"] == 403 and action["attempts"] == 2
    kube.clear_faults()
    assert run(db_url, cluster, T0 + timedelta(minutes=30)).errors == []
    data, text = _status(db_url, T0 + timedelta(minutes=30))
    assert (
        "Routing is disabled: its Ingresses send visitors to the suspension page (since 2026-11-25 14:30 UTC)." in text
    )
    assert data["deployments"][0]["actions"][0]["state"] == "done"
