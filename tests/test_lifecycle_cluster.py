"""The lifecycle against a Kubernetes API emulator, over HTTP through the official client."""

from __future__ import annotations

import copy
from collections import Counter
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from tests.support.kube import (  # noqa: F401  (fixtures)
    add_deployment, cluster, domain_status, events, kube, outbox, run, seed_deployment, set_account, set_balance,
)
from tests.support.platform import create_accounts

T0 = datetime(2026, 11, 25, 14, 0, tzinfo=timezone.utc)


def _state(url, account):
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT state, grace_deadline FROM billing.account_lifecycle WHERE account_id = %s",
                            (account,)).fetchone()


def test_grace_entry_removes_ingress_rules_and_topup_restores_them_identically(db_url, kube, cluster):
    create_accounts(db_url, "acme")
    add_deployment(db_url, "dep-web", "acme", "acme-prod", "web", hosts=["web.acme.test", "www.acme.test"])
    seed_deployment(kube, "acme-prod", "web", "dep-web", "acme", host="web.acme.test")
    original = copy.deepcopy(kube.get("Ingress", "acme-prod", "web")["spec"])

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
    assert "rules" not in spec and spec["tls"] == original["tls"]
    assert domain_status(db_url) == {"web.acme.test": "suspended", "www.acme.test": "suspended"}
    notices = outbox(db_url, "acme")
    assert [n[0] for n in notices] == ["lifecycle_grace_period"]
    assert "2026-11-28 15:00 UTC" in notices[0][3] and "Deployment web (namespace acme-prod)" in notices[0][3]
    with psycopg.connect(db_url) as conn:
        saved = conn.execute("SELECT rules, status FROM billing.lifecycle_saved_ingresses").fetchall()
    assert saved == [(original["rules"], "disabled")]

    # Re-running in grace changes nothing and records nothing new.
    n_events, n_patches = len(events(db_url)), len(kube.successful("PATCH"))
    r = run(db_url, cluster, T0 + timedelta(hours=2))
    assert r.errors == [] and len(events(db_url)) == n_events and len(kube.successful("PATCH")) == n_patches

    set_balance(db_url, "acme", 100)
    r = run(db_url, cluster, T0 + timedelta(hours=3))
    assert r.errors == [] and _state(db_url, "acme")[0] == "healthy"
    assert kube.get("Ingress", "acme-prod", "web")["spec"] == original
    assert domain_status(db_url) == {"web.acme.test": "active", "www.acme.test": "active"}
    assert [n[0] for n in outbox(db_url, "acme")] == ["lifecycle_grace_period", "lifecycle_recovered"]
    kinds = Counter((e["action"], e["outcome"]) for e in events(db_url))
    assert kinds[("remove_ingress_rules", "done")] == 1 and kinds[("restore_ingress_rules", "done")] == 1
    assert kinds[("transition", "done")] == 3  # healthy->low, low->grace, grace->healthy
    assert kube.successful("DELETE") == []
