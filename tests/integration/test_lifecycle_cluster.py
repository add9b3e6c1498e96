"""The lifecycle against the validating Kubernetes API emulator, over HTTP through the official client."""

from __future__ import annotations

import copy
import json
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone

import psycopg

from billing_pipeline.lifecycle.routing import suspension_service_name
from tests.support.kube import (
    add_deployment,
    cluster,
    domain_status,
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


def _state(url, account):
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT state, grace_deadline FROM billing.account_lifecycle WHERE account_id = %s", (account,)
        ).fetchone()


def _backends(spec: dict) -> list[dict]:
    out = [p["backend"] for r in spec.get("rules") or [] for p in (r.get("http") or {}).get("paths") or []]
    return out + ([spec["defaultBackend"]] if "defaultBackend" in spec else [])


def test_grace_points_every_backend_to_the_suspension_page_and_topup_restores_byte_identical(db_url, kube, cluster):
    create_accounts(db_url, "acme")
    add_deployment(db_url, "dep-web", "acme", "acme-prod", "web", hosts=["web.acme.test", "www.acme.test"])
    seed_deployment(kube, "acme-prod", "web", "dep-web", "acme", host="web.acme.test")
    # A defaultBackend too: every backend must go to the suspension page.
    ing = kube.get("Ingress", "acme-prod", "web")
    kube.put(
        "Ingress",
        "acme-prod",
        "web",
        labels=ing["metadata"]["labels"],
        spec={**ing["spec"], "defaultBackend": {"service": {"name": "web", "port": {"number": 80}}}},
    )
    original = copy.deepcopy(kube.get("Ingress", "acme-prod", "web")["spec"])
    original_bytes = json.dumps(original)

    set_balance(db_url, "acme", 5)
    r = run(db_url, cluster, T0)
    assert r.errors == [] and _state(db_url, "acme")[0] == "low_balance"
    assert kube.get("Ingress", "acme-prod", "web")["spec"] == original

    set_balance(db_url, "acme", "-0.5")
    r = run(db_url, cluster, T0 + timedelta(hours=1))
    assert r.errors == []
    state, deadline = _state(db_url, "acme")
    assert state == "grace_period" and deadline == T0 + timedelta(hours=73)
    spec = kube.get("Ingress", "acme-prod", "web")["spec"]
    service = suspension_service_name("dep-web")
    assert _backends(spec) == [{"service": {"name": service, "port": {"number": 80}}}] * 3
    assert spec["tls"] == original["tls"] and [r["host"] for r in spec["rules"]] == ["web.acme.test"]
    page = kube.get("Service", "acme-prod", service)
    assert page["spec"]["type"] == "ExternalName" and page["spec"]["externalName"] == "suspended.satusky.io"
    assert page["metadata"]["labels"]["satusky.io/deployment-id"] == "dep-web"
    assert page["metadata"]["labels"]["satusky.io/account-id"] == "acme"
    assert domain_status(db_url) == {"web.acme.test": "suspended", "www.acme.test": "suspended"}
    notices = outbox(db_url, "acme")
    assert [n[0] for n in notices] == ["lifecycle_grace_period"]
    assert "2026-11-28 15:00 UTC" in notices[0][3] and "Deployment web (namespace acme-prod)" in notices[0][3]
    with psycopg.connect(db_url) as conn:
        saved = conn.execute("SELECT spec_text, status FROM billing.lifecycle_saved_ingresses").fetchall()
    assert saved == [(original_bytes, "disabled")]

    # Re-running in grace changes nothing and records nothing new.
    n_events, n_writes = len(events(db_url)), len([c for c in kube.calls if c.method != "GET"])
    r = run(db_url, cluster, T0 + timedelta(hours=2))
    assert r.errors == [] and len(events(db_url)) == n_events
    assert len([c for c in kube.calls if c.method != "GET"]) == n_writes

    set_balance(db_url, "acme", 100)
    r = run(db_url, cluster, T0 + timedelta(hours=3))
    assert r.errors == [] and _state(db_url, "acme")[0] == "healthy"
    assert json.dumps(kube.get("Ingress", "acme-prod", "web")["spec"]) == original_bytes  # byte-identical
    assert kube.get("Service", "acme-prod", service) is None
    assert domain_status(db_url) == {"web.acme.test": "active", "www.acme.test": "active"}
    assert [n[0] for n in outbox(db_url, "acme")] == ["lifecycle_grace_period", "lifecycle_recovered"]
    kinds = Counter((e["action"], e["outcome"]) for e in events(db_url))
    assert kinds[("suspend_ingress", "done")] == 1 and kinds[("restore_ingress", "done")] == 1
    assert kinds[("create_suspension_service", "done")] == 1 and kinds[("delete_suspension_service", "done")] == 1
    assert kinds[("transition", "done")] == 3  # healthy->low, low->grace, grace->healthy
    assert kube.successful("DELETE") == [("Service", "acme-prod", service)]
    # Every write went through the validating API (nothing refused).
    assert [c for c in kube.calls if c.status == 422] == []


def _setup_two_accounts(db_url, kube):
    create_accounts(db_url, "acme", "beta")
    set_account(db_url, "acme", grace_period_hours=24)
    add_deployment(db_url, "dep-web", "acme", "acme-prod", "web", hosts=["web.acme.test"])
    add_deployment(db_url, "dep-old", "acme", "acme-prod", "legacy")  # created before labels existed
    add_deployment(db_url, "dep-beta", "beta", "beta-prod", "web", hosts=["web.beta.test"])
    seed_deployment(kube, "acme-prod", "web", "dep-web", "acme", host="web.acme.test", pvcs={"data-pg-0": "20Gi"})
    seed_deployment(kube, "acme-prod", "legacy", None, None, host="legacy.acme.test")
    # Same names, another account; an unlabelled twin in another namespace; kube-system twins.
    seed_deployment(kube, "beta-prod", "web", "dep-beta", "beta", host="web.beta.test", pvcs={"data-pg-0": "5Gi"})
    seed_deployment(kube, "other", "web", None, None, host="x.test", pvcs={"data-pg-0": "1Gi"})
    seed_deployment(kube, "kube-system", "web", "dep-web", "acme", host="y.test", pvcs={"data-pg-0": "1Gi"})
    # Something else in the account's namespace that belongs to no deployment of it.
    kube.put("ConfigMap", "acme-prod", "unrelated", labels={"app": "unrelated"})
    set_balance(db_url, "acme", -3)
    set_balance(db_url, "beta", 50)


ACME_OBJECTS = {
    ("Deployment", "acme-prod", "web"),
    ("Service", "acme-prod", "web"),
    ("Ingress", "acme-prod", "web"),
    ("ConfigMap", "acme-prod", "web-config"),
    ("Secret", "acme-prod", "web-secret"),
    ("PersistentVolumeClaim", "acme-prod", "data-pg-0"),
    ("Deployment", "acme-prod", "legacy"),
    ("Service", "acme-prod", "legacy"),
    ("Ingress", "acme-prod", "legacy"),
}


def test_expiry_deletes_exactly_the_deployments_objects(db_url, kube, cluster):
    _setup_two_accounts(db_url, kube)
    before = kube.objects()
    assert run(db_url, cluster, T0).errors == []
    assert _state(db_url, "acme") == ("grace_period", T0 + timedelta(hours=24))
    # Nothing deleted before the deadline, even a second before it.
    assert run(db_url, cluster, T0 + timedelta(hours=24) - timedelta(seconds=1)).errors == []
    assert kube.successful("DELETE") == [] and _state(db_url, "acme")[0] == "grace_period"

    pages = {("Service", "acme-prod", suspension_service_name(d)) for d in ("dep-web", "dep-old")}
    assert kube.objects() - before == pages  # the suspension Services, labelled for their deployments
    r = run(db_url, cluster, T0 + timedelta(hours=24))
    assert r.errors == [] and _state(db_url, "acme")[0] == "expired"
    assert before - kube.objects() == ACME_OBJECTS and not pages & kube.objects()
    deleted = kube.successful("DELETE")
    assert set(deleted) == ACME_OBJECTS | pages and len(deleted) == len(ACME_OBJECTS | pages)
    # Only the account's namespace was ever called; routing first, volumes last.
    assert {c.namespace for c in kube.calls} == {"acme-prod"}
    assert deleted[0][0] == "Ingress" and deleted[-1][0] == "PersistentVolumeClaim"
    assert domain_status(db_url) == {"web.acme.test": "released", "web.beta.test": "active"}
    ev = events(db_url, "acme")
    delete_events = [e for e in ev if e["action"] == "delete"]
    assert {
        (e["target"]["kind"], e["target"]["namespace"], e["target"]["name"]) for e in delete_events
    } == ACME_OBJECTS | pages
    assert all(e["outcome"] == "done" for e in delete_events) and len(delete_events) == len(ACME_OBJECTS | pages)
    legacy = {e["target"]["name"] for e in delete_events if e["target"]["found_by"] == "legacy_name"}
    assert legacy == {"legacy"}
    assert [n[0] for n in outbox(db_url, "acme")] == ["lifecycle_grace_period", "lifecycle_expired"]
    assert events(db_url, "beta") == []  # beta (healthy) is never acted on

    # Re-running is a no-op: no call that changes anything, no new event.
    n_calls, n_events = len(kube.successful("DELETE")), len(events(db_url))
    assert run(db_url, cluster, T0 + timedelta(hours=30)).errors == []
    assert len(kube.successful("DELETE")) == n_calls and len(events(db_url)) == n_events


def test_protected_namespace_and_foreign_namespace_are_refused(db_url, kube, cluster):
    create_accounts(db_url, "acme")
    set_account(db_url, "acme", grace_period_hours=0)
    add_deployment(db_url, "dep-sys", "acme", "kube-system", "coredns")
    add_deployment(db_url, "dep-ops", "acme", "platform-ops", "web")  # configured as protected
    seed_deployment(kube, "kube-system", "coredns", "dep-sys", "acme")
    seed_deployment(kube, "platform-ops", "web", "dep-ops", "acme")
    before = kube.objects()
    set_balance(db_url, "acme", -1)
    r = run(db_url, cluster, T0)
    assert len(r.errors) == 1 and "protected namespace" in r.errors[0]
    assert kube.objects() == before and [c for c in kube.calls if c.method != "GET" or c.namespace] == []
    refused = [e for e in events(db_url, "acme") if e["kind"] == "guard"]
    assert refused and all(e["outcome"] == "refused" for e in refused)


def test_retain_keeps_the_pvc_then_deletes_it_after_the_retention_period(db_url, kube, cluster):
    create_accounts(db_url, "acme")
    set_account(db_url, "acme", grace_period_hours=1, volume_policy="retain", volume_retention_days=7)
    add_deployment(db_url, "dep-web", "acme", "acme-prod", "web")
    seed_deployment(kube, "acme-prod", "web", "dep-web", "acme", pvcs={"data-pg-0": "20Gi", "logs": "1Gi"})
    set_balance(db_url, "acme", -1)
    assert run(db_url, cluster, T0).errors == []
    assert run(db_url, cluster, T0 + timedelta(hours=1)).errors == []  # expires
    assert _state(db_url, "acme")[0] == "expired"
    assert kube.get("Deployment", "acme-prod", "web") is None
    assert kube.get("PersistentVolumeClaim", "acme-prod", "data-pg-0") is not None
    assert run(db_url, cluster, T0 + timedelta(days=7)).errors == []  # one hour short of 7 days after expiry
    assert kube.get("PersistentVolumeClaim", "acme-prod", "data-pg-0") is not None
    assert run(db_url, cluster, T0 + timedelta(days=7, hours=1)).errors == []
    assert kube.get("PersistentVolumeClaim", "acme-prod", "data-pg-0") is None
    assert kube.get("PersistentVolumeClaim", "acme-prod", "logs") is None
    pvc_deletes = [c for c in kube.successful("DELETE") if c[0] == "PersistentVolumeClaim"]
    assert sorted(pvc_deletes) == [
        ("PersistentVolumeClaim", "acme-prod", "data-pg-0"),
        ("PersistentVolumeClaim", "acme-prod", "logs"),
    ]


def test_a_403_stops_the_step_with_a_clear_error_and_a_rerun_finishes(db_url, kube, cluster):
    create_accounts(db_url, "acme")
    set_account(db_url, "acme", grace_period_hours=0)
    add_deployment(db_url, "dep-web", "acme", "acme-prod", "web", hosts=["web.acme.test"])
    seed_deployment(kube, "acme-prod", "web", "dep-web", "acme", pvcs={"data-pg-0": "20Gi"})
    kube.fail("Service", "acme-prod", "web", 403, methods={"DELETE"})
    set_balance(db_url, "acme", -1)
    r = run(db_url, cluster, T0)
    assert len(r.errors) == 1
    assert "HTTP 403" in r.errors[0] and "Service acme-prod/web" in r.errors[0] and "permission" in r.errors[0]
    # What was deleted before the failure is recorded; the Service and everything after it is not.
    assert kube.get("Service", "acme-prod", "web") is not None
    assert kube.get("PersistentVolumeClaim", "acme-prod", "data-pg-0") is not None
    ev = events(db_url, "acme")
    done = {e["target"]["kind"] for e in ev if e["action"] == "delete" and e["outcome"] == "done"}
    assert done == {"Ingress", "Deployment"}
    assert [e["outcome"] for e in ev if e["action"] == "delete" and e["target"]["kind"] == "Service"] == ["failed"]
    assert domain_status(db_url) == {"web.acme.test": "suspended"}  # not released: the step is not done

    kube.clear_faults()
    assert run(db_url, cluster, T0 + timedelta(hours=1)).errors == []
    assert {o for o in kube.objects() if o[1] == "acme-prod"} == set()
    assert domain_status(db_url) == {"web.acme.test": "released"}
    ev = events(db_url, "acme")
    assert Counter(e["event_key"] for e in ev).most_common(1)[0][1] == 1
    assert [e["outcome"] for e in ev if e["action"] == "delete" and e["target"]["kind"] == "Service"] == [
        "failed",
        "done",
    ]


def test_dry_run_records_what_it_would_do_and_does_nothing(db_url, kube, cluster):
    create_accounts(db_url, "acme")
    set_account(db_url, "acme", grace_period_hours=0)
    add_deployment(db_url, "dep-web", "acme", "acme-prod", "web", hosts=["web.acme.test"])
    seed_deployment(kube, "acme-prod", "web", "dep-web", "acme", pvcs={"data-pg-0": "20Gi"})
    before = {o: kube.get(*o) for o in kube.objects()}
    set_balance(db_url, "acme", -1)
    assert run(db_url, cluster, T0, dry_run=True).errors == []
    assert run(db_url, cluster, T0, dry_run=True).errors == []  # same clock: recorded once
    assert {o: kube.get(*o) for o in kube.objects()} == before
    assert {c.method for c in kube.calls} == {"GET"}
    assert _state(db_url, "acme") is None and domain_status(db_url) == {"web.acme.test": "active"}
    assert outbox(db_url, "acme") == []
    ev = events(db_url, "acme")
    assert ev and {e["kind"] for e in ev} == {"dry_run"} and {e["outcome"] for e in ev} == {"would_do"}
    would = Counter(e["detail"]["would"] for e in ev)
    assert would["transition"] == 2  # healthy -> grace -> expired (grace period 0 h)
    would_delete = {(e["target"]["kind"], e["target"]["name"]) for e in ev if e["action"] == "delete"}
    assert would_delete == {
        ("Ingress", "web"),
        ("Deployment", "web"),
        ("Service", "web"),
        ("ConfigMap", "web-config"),
        ("Secret", "web-secret"),
        ("PersistentVolumeClaim", "data-pg-0"),
    }
    assert len(ev) == len({e["event_key"] for e in ev})


def test_early_idle_deletion_deletes_an_idle_deployment_with_its_reason(db_url, kube, cluster):
    create_accounts(db_url, "acme")
    set_account(db_url, "acme", early_idle_deletion=True)
    created = T0 - timedelta(days=3)
    add_deployment(db_url, "dep-idle", "acme", "acme-prod", "cron", created_at=created)
    add_deployment(db_url, "dep-busy", "acme", "acme-prod", "web", created_at=created)
    seed_deployment(kube, "acme-prod", "cron", "dep-idle", "acme")
    seed_deployment(kube, "acme-prod", "web", "dep-busy", "acme")
    with psycopg.connect(db_url) as conn:
        for h in range(24):
            hour = T0 - timedelta(hours=24 - h)
            conn.execute("INSERT INTO billing.metric_hours (hour, complete) VALUES (%s, true)", (hour,))
            for dep, cpu, pod in (("dep-idle", "0.0001", "cron-1"), ("dep-busy", "0.5", "web-1")):
                conn.execute(
                    "INSERT INTO billing.metric_container_hours (hour, namespace, pod, container, deployment_id, "
                    "account_id, attribution, present_minutes, cpu_usage_core_hours) VALUES "
                    "(%s, 'acme-prod', %s, 'app', %s, 'acme', 'label', 60, %s)",
                    (hour, pod, dep, cpu),
                )
    set_balance(db_url, "acme", -1)
    assert run(db_url, cluster, T0 + timedelta(minutes=10)).errors == []
    assert _state(db_url, "acme")[0] == "grace_period"
    assert {o[2] for o in kube.objects() if o[1] == "acme-prod"} == {
        "web",
        "web-config",
        "web-secret",
        suspension_service_name("dep-busy"),
    }
    assert _backends(kube.get("Ingress", "acme-prod", "web")["spec"])[0]["service"]["name"] == suspension_service_name(
        "dep-busy"
    )  # busy one: routing off only
    reason = [e for e in events(db_url, "acme") if e["action"] == "early_idle_deletion"]
    assert len(reason) == 1 and reason[0]["deployment_id"] == "dep-idle"
    assert "idle over the last 24 hours" in reason[0]["detail"]["reason"]
    notices = outbox(db_url, "acme")
    assert [n[0] for n in notices] == ["lifecycle_grace_period", "lifecycle_idle_deletion"]
    assert "cron" in notices[1][3] and "0.0024" in notices[1][3]
