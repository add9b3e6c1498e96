"""Routing off in grace, in a form a real kube-apiserver accepts, and back on exactly as it was.

Off: every backend of each of the deployment's Ingresses (every path, the ``defaultBackend``; a
host rule without paths gets one ``/`` path) points to a **suspension Service** the pipeline
creates in the namespace: type ExternalName to the host serving the "suspended, add credits"
page (``Cluster.suspension_host``), labelled with the deployment and account ids and
``satusky.io/role=suspension-page``. Removing ``rules`` instead would leave an Ingress the API
server refuses (422: "either `defaultBackend` or `rules` must be specified").

The original spec is saved first, as the exact text the API server returned, in its own commit;
the Ingress is then replaced (PUT, with the ``resourceVersion`` it was read at: a concurrent change
answers 409 and the next run retries). On recovery the saved text is put back, byte-identical,
and the suspension Service deleted. Each step is keyed, so a run killed anywhere completes on the
next one without doing or recording anything twice.
"""

from __future__ import annotations

import copy
import hashlib
import json

from billing_pipeline.core.errors import BillingError
from billing_pipeline.lifecycle import store
from billing_pipeline.lifecycle.actions import tracked
from billing_pipeline.lifecycle.discovery import owned_objects, target
from billing_pipeline.lifecycle.store import Account, Deployment
from billing_pipeline.resources.cluster import (
    ACCOUNT_ID_LABEL,
    DEPLOYMENT_ID_LABEL,
    CallResult,
    ClusterCallError,
    labels_of,
)

ROLE_LABEL = "satusky.io/role"
SUSPENSION_ROLE = "suspension-page"


def suspension_service_name(deployment_id: str) -> str:
    return "satusky-suspended-" + hashlib.sha1(deployment_id.encode()).hexdigest()[:10]


def suspension_service(account_id: str, dep: Deployment, host: str, port: int) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": suspension_service_name(dep.id),
            "namespace": dep.namespace,
            "labels": {
                DEPLOYMENT_ID_LABEL: dep.id,
                ACCOUNT_ID_LABEL: account_id,
                ROLE_LABEL: SUSPENSION_ROLE,
                "app.kubernetes.io/managed-by": "satusky-billing",
            },
        },
        "spec": {
            "type": "ExternalName",
            "externalName": host,
            "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
        },
    }


def suspended_spec(spec: dict, service: str, port: int) -> dict:
    """``spec`` with every backend pointing to the suspension Service (tls, class, hosts kept)."""
    new = copy.deepcopy(spec)
    backend = {"service": {"name": service, "port": {"number": port}}}
    for rule in new.get("rules") or []:
        if not (rule.get("http") or {}).get("paths"):
            rule["http"] = {"paths": [{"path": "/", "pathType": "Prefix", "backend": {}}]}
        for path in rule["http"]["paths"]:
            path["backend"] = copy.deepcopy(backend)
    if "defaultBackend" in new or not new.get("rules"):
        new["defaultBackend"] = copy.deepcopy(backend)
    return new


def disable(lc, account: Account, episode: int, outcome) -> None:
    """Point every Ingress of every live deployment of ``account`` to its suspension Service."""
    shared = store.shared_namespaces(lc.conn, account.id)  # no legacy match by name there: it may be theirs
    for dep in store.live_deployments(lc.conn, account.id):
        with tracked(
            lc,
            account.id,
            f"routing:{dep.id}",
            "routing_off",
            dep.id,
            {"namespace": dep.namespace, "deployment": dep.name},
        ):
            cluster = lc.need_cluster()
            cluster.guard(dep.namespace)
            ingresses = owned_objects(cluster, account.id, dep, "Ingress", legacy_by_name=dep.namespace not in shared)
            service = suspension_service_name(dep.id)
            if ingresses:
                _ensure_service(lc, account, dep, episode, service)
            for ing in ingresses:
                _suspend(lc, account, dep, episode, ing, service, outcome)


def _ensure_service(lc, account: Account, dep: Deployment, episode: int, service: str) -> None:
    key = f"{account.id}:{episode}:suspension_service:{dep.namespace}/{service}"
    tgt = target("Service", dep.namespace, service)
    if lc.dry_run:
        lc.event(
            key=key,
            account_id=account.id,
            deployment_id=dep.id,
            kind="cluster_call",
            action="create_suspension_service",
            outcome="done",
            target=tgt,
        )
        return
    body = suspension_service(account.id, dep, lc.cluster.suspension_host, lc.cluster.suspension_port)
    try:
        existing = lc.cluster.get("Service", dep.namespace, service)
        result = (
            CallResult("exists", existing)
            if existing is not None
            else lc.cluster.create("Service", dep.namespace, body)
        )
    except ClusterCallError as exc:
        lc.failed(
            account, dep.id, f"suspension_service:{dep.namespace}/{service}", "create_suspension_service", tgt, exc
        )
        raise
    if result.outcome == "exists":
        labels = labels_of(result.object)
        if labels.get(ACCOUNT_ID_LABEL) != account.id or labels.get(ROLE_LABEL) != SUSPENSION_ROLE:
            raise BillingError(
                f"Service {dep.namespace}/{service} exists and is not the suspension Service of account "
                f"{account.id}; rename or delete it, then re-run grace_period_job."
            )
    lc.event(
        key=key,
        account_id=account.id,
        deployment_id=dep.id,
        kind="cluster_call",
        action="create_suspension_service",
        outcome="done",
        target=tgt,
        detail={"external_name": lc.cluster.suspension_host, "existed": result.outcome == "exists"},
    )


def _suspend(lc, account: Account, dep: Deployment, episode: int, ing: dict, service: str, outcome) -> None:
    ns, name = dep.namespace, ing["metadata"]["name"]
    key = f"{account.id}:{episode}:disable_routing:{ns}/{name}"
    tgt = target("Ingress", ns, name, uid=ing["metadata"].get("uid"))
    spec = ing.get("spec") or {}
    if lc.dry_run:
        lc.event(
            key=key,
            account_id=account.id,
            deployment_id=dep.id,
            kind="cluster_call",
            action="suspend_ingress",
            outcome="done",
            target=tgt,
            detail={"service": service},
        )
        return
    # Saved first, in its own commit: once the backends point elsewhere only this row remembers them.
    store.save_ingress(
        lc.conn,
        namespace=ns,
        name=name,
        account_id=account.id,
        deployment_id=dep.id,
        episode=episode,
        spec=spec,
        spec_text=json.dumps(spec),
        service=service,
        now=lc.now,
    )
    new_spec = suspended_spec(spec, service, lc.cluster.suspension_port)
    if new_spec != spec:
        try:
            lc.cluster.replace("Ingress", ns, {**ing, "spec": new_spec})
        except ClusterCallError as exc:
            lc.failed(account, dep.id, f"disable_routing:{ns}/{name}", "suspend_ingress", tgt, exc)
            raise
    with lc.conn.transaction():
        store.mark_ingresses(lc.conn, [(ns, name)], "disabled", lc.now)
        if lc.event(
            key=key,
            account_id=account.id,
            deployment_id=dep.id,
            kind="cluster_call",
            action="suspend_ingress",
            outcome="done",
            target=tgt,
            detail={"service": service},
        ):
            outcome.actions.append(f"Ingress {ns}/{name} now routes to the suspension page")


def restore(lc, account: Account, outcome) -> None:
    """Put every saved Ingress spec back exactly, then delete the suspension Services."""
    by_dep: dict[str, list[dict]] = {}
    for row in store.saved_ingresses(lc.conn, account.id):
        by_dep.setdefault(row["deployment_id"], []).append(row)
    for dep_id, rows in by_dep.items():
        with tracked(
            lc,
            account.id,
            f"routing:{dep_id}",
            "routing_restore",
            dep_id,
            {"namespace": rows[0]["namespace"], "ingresses": [r["name"] for r in rows]},
        ):
            _restore_deployment(lc, account, dep_id, rows, outcome)


def _restore_deployment(lc, account: Account, dep_id: str, rows: list[dict], outcome) -> None:
    cluster = lc.need_cluster()
    marks: dict[str, list] = {"restored": [], "gone": []}
    for r in rows:
        ns, name = r["namespace"], r["name"]
        key = f"{account.id}:{r['episode']}:restore_routing:{ns}/{name}"
        if lc.dry_run:
            lc.event(
                key=key,
                account_id=account.id,
                deployment_id=dep_id,
                kind="cluster_call",
                action="restore_ingress",
                outcome="done",
                target=target("Ingress", ns, name),
            )
            continue
        current = cluster.get("Ingress", ns, name)
        call_outcome = "already_absent" if current is None else "done"
        if current is not None:
            original = _original(r, current)
            if current.get("spec") != original:
                try:
                    cluster.replace("Ingress", ns, {**current, "spec": original})
                except ClusterCallError as exc:
                    lc.failed(
                        account,
                        dep_id,
                        f"restore_routing:{ns}/{name}",
                        "restore_ingress",
                        target("Ingress", ns, name),
                        exc,
                    )
                    raise
        marks["gone" if current is None else "restored"].append((ns, name))
        if lc.event(
            key=key,
            account_id=account.id,
            deployment_id=dep_id,
            kind="cluster_call",
            action="restore_ingress",
            outcome=call_outcome,
            target=target("Ingress", ns, name),
        ):
            outcome.actions.append(f"restored Ingress {ns}/{name} exactly as it was")
    if lc.dry_run:
        return
    services = {(r["namespace"], r["suspension_service"]) for r in rows if r["suspension_service"]}
    for ns, service in sorted(services):
        tgt = target("Service", ns, service)
        try:
            result = cluster.delete("Service", ns, service)
        except ClusterCallError as exc:
            lc.failed(account, dep_id, f"remove_suspension_service:{ns}/{service}", "delete", tgt, exc)
            raise
        lc.event(
            key=f"{account.id}:{rows[0]['episode']}:remove_suspension_service:{ns}/{service}",
            account_id=account.id,
            deployment_id=dep_id,
            kind="cluster_call",
            action="delete_suspension_service",
            outcome=result.outcome,
            target=tgt,
        )
    with lc.conn.transaction():
        for status, keys in marks.items():
            store.mark_ingresses(lc.conn, keys, status, lc.now)


def _original(row: dict, current: dict) -> dict:
    """The saved spec; rows saved before spec_text existed kept only rules and defaultBackend."""
    if row["spec_text"] is not None:
        return json.loads(row["spec_text"])
    spec = {k: v for k, v in (current.get("spec") or {}).items() if k not in ("rules", "defaultBackend")}
    if row["has_rules"]:
        spec["rules"] = row["rules"]
    if row["has_default_backend"]:
        spec["defaultBackend"] = row["default_backend"]
    return spec
