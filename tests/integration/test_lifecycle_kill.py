"""A real kill: the lifecycle runs in its own process, the emulator holds the answer to its n-th
cluster write (already applied), the test SIGKILLs the process, and a re-run must complete with
every object deleted once and nothing recorded twice, for every n."""

from __future__ import annotations

import os
import signal
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone

import psycopg

from billing_pipeline.lifecycle.snapshots import snapshot_name
from tests.support.kube import (
    add_deployment,
    cluster,
    events,
    kube,
    run,
    run_in_child,
    seed_deployment,
    set_account,
    set_balance,
    wait_until_held,
)
from tests.support.platform import create_accounts

T0 = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)
WRITES = [
    "DELETE Ingress",
    "DELETE Deployment",
    "DELETE Service",
    "DELETE ConfigMap",
    "DELETE Secret",
    "POST VolumeSnapshot",
    "DELETE PersistentVolumeClaim",
]


def _expiring_account(db_url, kube, n: int) -> tuple[str, str]:
    account, ns = f"acme{n}", f"ns{n}"
    create_accounts(db_url, account)
    set_account(db_url, account, grace_period_hours=0, volume_policy="snapshot")
    add_deployment(db_url, f"dep-{n}", account, ns, "web", hosts=[f"web{n}.test"])
    seed_deployment(kube, ns, "web", f"dep-{n}", account, pvcs={"data": "1Gi"})
    set_balance(db_url, account, -1)
    return account, ns


def test_cleanup_sigkilled_after_each_cluster_write_completes_once_on_rerun(db_url, kube, cluster):
    held_writes = []
    n = 0
    while True:
        account, ns = _expiring_account(db_url, kube, n)
        kube.pause_after_write(n)
        child = run_in_child(db_url, str(kube.kubeconfig_path), T0, [account])
        held = wait_until_held(kube, child)
        if held is None:  # the whole cleanup has fewer writes than n: the uninterrupted run
            child.join(30)
            kube.release()
            assert child.exitcode == 0
            break
        os.kill(child.pid, signal.SIGKILL)  # right after the write, before anything was recorded
        child.join(30)
        kube.release()
        assert child.exitcode == -signal.SIGKILL
        held_writes.append(f"{held.method} {held.kind}")

        assert run(db_url, cluster, T0 + timedelta(minutes=15), account_ids=[account]).errors == []
        left = {o for o in kube.objects() if o[1] == ns}
        assert left == {("VolumeSnapshot", ns, snapshot_name(f"dep-{n}", "data"))}, (n, left)
        deletes = Counter(c for c in kube.successful("DELETE") if c[1] == ns)
        assert len(deletes) == 6 and set(deletes.values()) == {1}, (n, deletes)  # each object deleted once
        assert len([c for c in kube.successful("POST") if c[1] == ns]) == 1  # one snapshot taken
        ev = events(db_url, account)
        recorded = Counter(
            (e["action"], e["target"].get("kind"), e["target"].get("name"))
            for e in ev
            if e["action"] in ("delete", "create_snapshot", "snapshot_ready")
        )
        assert len(recorded) == 8 and set(recorded.values()) == {1}, (n, recorded)
        with psycopg.connect(db_url) as conn:
            done = conn.execute(
                "SELECT volumes_done_at IS NOT NULL FROM billing.lifecycle_cleanups WHERE account_id = %s", (account,)
            ).fetchall()
        assert done == [(True,)]
        # And once more: nothing left to do, nothing recorded.
        n_events = len(ev)
        assert run(db_url, cluster, T0 + timedelta(minutes=30), account_ids=[account]).errors == []
        assert len(events(db_url, account)) == n_events
        n += 1
    assert held_writes == WRITES


ROUTING_WRITES = [
    "POST Service",
    "PUT Ingress",
    "PUT Deployment",  # grace: suspension page, scale to zero
    "PUT Ingress",
    "DELETE Service",
    "PUT Deployment",
]  # top-up: restore


def test_routing_and_scaling_sigkilled_after_each_write_restore_exactly_once(db_url, kube, cluster):
    import json

    from billing_pipeline.lifecycle.routing import suspension_service_name

    held_writes = []
    for n in range(len(ROUTING_WRITES) + 1):
        account, ns, dep = f"acme{n}", f"ns{n}", f"dep-{n}"
        create_accounts(db_url, account)
        set_account(db_url, account, scale_to_zero_after_hours=0)
        add_deployment(db_url, dep, account, ns, "web")
        seed_deployment(kube, ns, "web", dep, account)
        original = json.dumps(kube.get("Ingress", ns, "web")["spec"])
        set_balance(db_url, account, -1)
        phase_two = n >= 3
        if phase_two:  # kill during the restore: enter grace uninterrupted first, then top up
            assert run(db_url, cluster, T0, account_ids=[account]).errors == []
            set_balance(db_url, account, 50)
        kube.pause_after_write(n - 3 if phase_two else n)
        at = T0 + timedelta(hours=1 if phase_two else 0)
        child = run_in_child(db_url, str(kube.kubeconfig_path), at, [account])
        held = wait_until_held(kube, child)
        if held is None:
            child.join(30)
            kube.release()
            assert n == len(ROUTING_WRITES) and child.exitcode == 0
            break
        os.kill(child.pid, signal.SIGKILL)
        child.join(30)
        kube.release()
        held_writes.append(f"{held.method} {held.kind}")
        # Re-run where the killed run was, then to the end (top-up if not yet).
        assert run(db_url, cluster, at + timedelta(minutes=15), account_ids=[account]).errors == []
        if not phase_two:
            service = kube.get("Ingress", ns, "web")["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
            assert (
                service["name"] == suspension_service_name(dep)
                and kube.get("Deployment", ns, "web")["spec"]["replicas"] == 0
            )
            set_balance(db_url, account, 50)
            assert run(db_url, cluster, T0 + timedelta(hours=2), account_ids=[account]).errors == []
        assert json.dumps(kube.get("Ingress", ns, "web")["spec"]) == original  # byte-identical
        assert kube.get("Deployment", ns, "web")["spec"]["replicas"] == 1
        assert kube.get("Service", ns, suspension_service_name(dep)) is None
        writes = Counter(
            (c.method, c.kind) for c in kube.calls if c.namespace == ns and c.method != "GET" and c.status < 300
        )
        assert writes == {
            ("POST", "Service"): 1,
            ("PUT", "Ingress"): 2,
            ("PUT", "Deployment"): 2,
            ("DELETE", "Service"): 1,
        }, (n, writes)
        ev = events(db_url, account)
        acts = Counter(e["action"] for e in ev if e["kind"] == "cluster_call")
        assert acts == {
            "create_suspension_service": 1,
            "suspend_ingress": 1,
            "scale_to_zero": 1,
            "restore_ingress": 1,
            "delete_suspension_service": 1,
            "scale_restore": 1,
        }, (n, acts)
    assert held_writes == ROUTING_WRITES
