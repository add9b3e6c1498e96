"""`billing status` in each lifecycle state, `billing cleanup-preview`, and grace_period_job in Dagster."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from billing_pipeline.cli.main import main
from billing_pipeline.lifecycle.routing import suspension_service_name
from tests.support.kube import (
    add_deployment,
    cluster,
    kube,
    outbox,
    run,
    seed_deployment,
    set_account,
    set_balance,
)
from tests.support.platform import create_accounts

T0 = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)


def cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def acme(db_url, kube, cluster, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(kube.kubeconfig_path))
    create_accounts(db_url, "acme")
    set_account(db_url, "acme", grace_period_hours=72)
    add_deployment(db_url, "dep-web", "acme", "acme-prod", "web", hosts=["web.acme.test"])
    seed_deployment(kube, "acme-prod", "web", "dep-web", "acme", pvcs={"data-pg-0": "20Gi"})
    import psycopg

    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO billing.metric_volume_hours (hour, namespace, persistentvolumeclaim, deployment_id, "
            "account_id, attribution, requested_bytes) VALUES (%s, 'acme-prod', 'data-pg-0', 'dep-web', "
            "'acme', 'label', %s)",
            (T0 - timedelta(hours=1), 20 * 2**30),
        )
    return db_url


def status(capsys, now, *extra):
    code, out, err = cli(capsys, "status", "acme", "--now", now.isoformat(), *extra)
    assert code == 0, err
    return out


def test_status_in_each_state(acme, kube, cluster, capsys):
    set_balance(acme, "acme", 100)
    run(acme, cluster, T0)
    out = status(capsys, T0)
    assert "State: healthy" in out and "Deadline: none" in out
    assert "PVC data-pg-0 (20 GiB) would be deleted with its data at an expiry." in out

    set_balance(acme, "acme", 4)
    run(acme, cluster, T0)
    out = status(capsys, T0)
    assert "State: low_balance" in out

    set_balance(acme, "acme", -2)
    run(acme, cluster, T0 + timedelta(minutes=30))
    out = status(capsys, T0 + timedelta(minutes=30))
    assert "State: grace_period" in out and "Deadline: 2026-11-28 14:30 UTC" in out
    assert "PVC data-pg-0 (20 GiB) will be deleted with its data on 2026-11-28 14:30 UTC." in out
    assert "Deployment web (namespace acme-prod) will be deleted" in out and "web.acme.test then released" in out
    data = json.loads(status(capsys, T0, "--json"))
    assert data["state"] == "grace_period" and data["grace_deadline"] == "2026-11-28T14:30:00+00:00"
    assert data["volumes"][0]["fate"] == "pending_expiry" and data["balance"] == "-2.000000"
    assert [(a["key"], a["action"], a["state"]) for a in data["actions"]] == [
        ("routing:dep-web", "routing_off", "done")
    ]
    assert data["deployments"][0]["actions"][0]["error"] is None
    assert "Routing is disabled: its Ingresses send visitors to the suspension page" in out

    code, out, _ = cli(capsys, "cleanup-preview", "acme", "--now", T0.isoformat())
    assert code == 0 and "Would delete 7 object(s)" in out and "data-pg-0 (20 GiB, with its data)" in out
    preview = json.loads(cli(capsys, "cleanup-preview", "acme", "--json", "--now", T0.isoformat())[1])
    assert {(o["kind"], o["name"]) for o in preview["delete"]} == {
        ("Ingress", "web"),
        ("Deployment", "web"),
        ("Service", "web"),
        ("ConfigMap", "web-config"),
        ("Secret", "web-secret"),
        ("PersistentVolumeClaim", "data-pg-0"),
        ("Service", suspension_service_name("dep-web")),
    }  # the suspension Service, labelled for the deployment
    n_writes = len([c for c in kube.calls if c.method != "GET"])
    cli(capsys, "cleanup-preview", "acme", "--json", "--now", T0.isoformat())
    assert len([c for c in kube.calls if c.method != "GET"]) == n_writes  # preview only reads

    run(acme, cluster, T0 + timedelta(hours=72, minutes=30))
    out = status(capsys, T0 + timedelta(hours=73))
    assert "State: expired" in out and "was deleted on 2026-11-28 14:30 UTC (expired)" in out
    assert "PVC data-pg-0 (20 GiB) was deleted with its data on 2026-11-28 14:30 UTC." in out
    code, out, _ = cli(capsys, "cleanup-preview", "acme", "--now", (T0 + timedelta(hours=73)).isoformat())
    assert "Would delete nothing." in out


def test_status_under_retain_and_unknown_account(acme, cluster, capsys):
    set_account(acme, "acme", volume_policy="retain", volume_retention_days=7, grace_period_hours=1)
    set_balance(acme, "acme", -1)
    run(acme, cluster, T0)
    out = status(capsys, T0)
    assert (
        "PVC data-pg-0 (20 GiB) will be kept after expiry until 2026-12-02 15:00 UTC, then deleted with its data."
        in out
    )
    run(acme, cluster, T0 + timedelta(hours=1))
    out = status(capsys, T0 + timedelta(hours=2))
    assert (
        "PVC data-pg-0 (20 GiB) is kept under the retain policy until 2026-12-02 15:00 UTC, then will be deleted with its data."
        in out
    )
    code, _, err = cli(capsys, "status", "nobody")
    assert code == 2 and "unknown account 'nobody'" in err and "Traceback" not in err
    code, _, err = cli(capsys, "cleanup-preview", "nobody")
    assert code == 2 and "unknown account 'nobody'" in err


def test_grace_period_job_through_dagster_with_schedule(acme, kube, monkeypatch):
    import dagster as dg

    from billing_pipeline.core.clock import CLOCK_TAG
    from billing_pipeline.definitions import defs
    from billing_pipeline.lifecycle.defs import grace_deadline_schedule

    monkeypatch.setenv("KUBECONFIG", str(kube.kubeconfig_path))
    grace_period_job = defs.resolve_job_def("grace_period_job")
    set_balance(acme, "acme", -1)
    result = grace_period_job.execute_in_process(tags={CLOCK_TAG: T0.isoformat()})
    assert result.success
    backend = kube.get("Ingress", "acme-prod", "web")["spec"]["rules"][0]["http"]["paths"][0]["backend"]
    assert backend["service"]["name"] == suspension_service_name("dep-web")
    assert [n[0] for n in outbox(acme, "acme")] == ["lifecycle_grace_period"]

    # The schedule runs with its tick time as the clock.
    from billing_pipeline.resources.kubernetes import KubernetesResource

    ctx = dg.build_schedule_context(
        scheduled_execution_time=T0 + timedelta(hours=72), resources={"kubernetes": KubernetesResource()}
    )
    req = grace_deadline_schedule(ctx)
    assert req.tags[CLOCK_TAG] == (T0 + timedelta(hours=72)).isoformat()
    # A 500 on one object: the run records what it could, and its check fails naming the object;
    # once the API answers, a re-run finishes.
    kube.fail("Service", "acme-prod", "web", 500, methods={"DELETE"})
    result = grace_period_job.execute_in_process(tags=req.tags)
    (check,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "every_cluster_action_done"]
    assert not check.passed
    assert "HTTP 500" in check.description and "Service acme-prod/web" in check.description
    kube.clear_faults()
    result = grace_period_job.execute_in_process(tags=req.tags)
    assert all(e.passed for e in result.get_asset_check_evaluations())
    assert {o for o in kube.objects() if o[1] == "acme-prod"} == set()


def test_lifecycle_demo_goes_through_grace_to_expiry(db_url):
    from devkit.demo.lifecycle import run_lifecycle_demo

    lines = run_lifecycle_demo(db_url)
    text = "\n".join(lines)
    assert "state grace_period, deadline 2026-11-28 15:00 UTC" in text
    assert "ingress rules restored identically: yes" in text
    assert "state expired" in text and "ERROR" not in text
    assert "Objects left for this deployment: ConfigMap kube-system/" in text
