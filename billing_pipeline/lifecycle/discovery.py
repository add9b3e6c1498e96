"""Which cluster objects belong to a deployment: labelled with its id, or (legacy) named like it.

Objects labelled for another account are never included, whatever their name.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from billing_pipeline.lifecycle.store import Deployment
from billing_pipeline.resources.cluster import ACCOUNT_ID_LABEL, DEPLOYMENT_ID_LABEL, KINDS, Cluster, labels_of


@dataclass(frozen=True)
class PlannedObject:
    kind: str
    namespace: str
    name: str
    found_by: str  # "label" | "legacy_name"
    uid: str | None
    size_bytes: Decimal | None = None


def quantity_bytes(q: str | None) -> Decimal | None:
    """A Kubernetes quantity ("20Gi", "500M") in bytes."""
    if not q:
        return None
    units = {
        "Ki": 2**10,
        "Mi": 2**20,
        "Gi": 2**30,
        "Ti": 2**40,
        "Pi": 2**50,
        "k": 10**3,
        "M": 10**6,
        "G": 10**9,
        "T": 10**12,
    }
    for suffix in sorted(units, key=len, reverse=True):
        if q.endswith(suffix):
            return Decimal(q[: -len(suffix)]) * units[suffix]
    return Decimal(q)


def owned_objects(cluster: Cluster, account_id: str, dep: Deployment, kind: str, *, legacy_by_name: bool) -> list[dict]:
    """The objects of ``kind`` of ``dep`` in its namespace, as the API server returned them."""
    return [obj for obj, _ in _owned(cluster, account_id, dep, kind, legacy_by_name=legacy_by_name)]


def _owned(
    cluster: Cluster, account_id: str, dep: Deployment, kind: str, *, legacy_by_name: bool
) -> list[tuple[dict, str]]:
    found: dict[str, tuple[dict, str]] = {}
    for obj in cluster.list(kind, dep.namespace, f"{DEPLOYMENT_ID_LABEL}={dep.id}"):
        if labels_of(obj).get(ACCOUNT_ID_LABEL, account_id) == account_id:
            found[obj["metadata"]["name"]] = (obj, "label")
    if legacy_by_name and dep.name not in found:
        obj = cluster.get(kind, dep.namespace, dep.name)
        if obj is not None:
            labels = labels_of(obj)
            if DEPLOYMENT_ID_LABEL not in labels and labels.get(ACCOUNT_ID_LABEL, account_id) == account_id:
                found[dep.name] = (obj, "legacy_name")
    return list(found.values())


def discover(
    cluster: Cluster, account_id: str, dep: Deployment, *, legacy_by_name: bool, kinds: Iterable[str] = KINDS
) -> list[PlannedObject]:
    """The objects that belong to ``dep``, of each of ``kinds``, to plan their deletion."""
    out = []
    for kind in kinds:
        for obj, found_by in _owned(cluster, account_id, dep, kind, legacy_by_name=legacy_by_name):
            meta = obj["metadata"]
            size = None
            if kind == "PersistentVolumeClaim":
                size = quantity_bytes(
                    (((obj.get("spec") or {}).get("resources") or {}).get("requests") or {}).get("storage")
                )
            out.append(PlannedObject(kind, meta.get("namespace"), meta["name"], found_by, meta.get("uid"), size))
    return out


def target(kind: str, ns: str, name: str, **extra) -> dict:
    """How an event names the object it touched."""
    return {"kind": kind, "namespace": ns, "name": name, **extra}
