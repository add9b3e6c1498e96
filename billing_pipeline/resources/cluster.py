"""The Kubernetes calls the lifecycle makes, through the official client, with its guards.

``KubernetesResource`` (``resources.kubernetes``) configures and hands out a ``Cluster``.

Objects travel as plain JSON dicts exactly as the API server returned them (the client's model
round-trip would rename ``pathType`` to ``path_type`` and lose what it does not know, and Ingress
rules must be restored exactly). Every call answers one of three ways:

* it worked (``"done"``), or the object is already gone (404: ``"already_absent"``);
* anything else (403, 409 Conflict, 422 Invalid, 5xx, connection refused) raises
  ``ClusterCallError`` naming the call and the API server's message.

``Cluster`` also refuses, before any request, to touch a protected namespace.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from billing_pipeline.core.errors import BillingError

DEPLOYMENT_ID_LABEL = "satusky.io/deployment-id"
ACCOUNT_ID_LABEL = "satusky.io/account-id"

ALWAYS_PROTECTED = ("kube-system", "kube-public", "default")
# The page visitors of a suspended deployment see ("suspended, add credits"), served by the platform.
DEFAULT_SUSPENSION_HOST = "suspended.satusky.io"


def snapshot_class_from_env() -> str | None:
    """The ``VolumeSnapshotClass`` named by ``BILLING_SNAPSHOT_CLASS`` (None: the cluster's default).

    Read here, not through the Dagster resource, so `billing status` starts without Dagster."""
    return os.environ.get("BILLING_SNAPSHOT_CLASS") or None


# Kind -> (API class name, method suffix). The order is the cleanup order: routing first, then the
# workload, its configuration, and the volumes (data) last.
KINDS: dict[str, tuple[str, str]] = {
    "Ingress": ("NetworkingV1Api", "ingress"),
    "Deployment": ("AppsV1Api", "deployment"),
    "Service": ("CoreV1Api", "service"),
    "ConfigMap": ("CoreV1Api", "config_map"),
    "Secret": ("CoreV1Api", "secret"),
    "PersistentVolumeClaim": ("CoreV1Api", "persistent_volume_claim"),
}
WORKLOAD_KINDS = ("Ingress", "Deployment", "Service", "ConfigMap", "Secret")
# Custom resources, through CustomObjectsApi: Kind -> (group, version, plural).
CUSTOM_KINDS: dict[str, tuple[str, str, str]] = {
    "VolumeSnapshot": ("snapshot.storage.k8s.io", "v1", "volumesnapshots"),
}


class ClusterCallError(BillingError):
    """A Kubernetes call failed for a reason other than "not found"; the step is not done."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ProtectedNamespaceError(BillingError):
    """The lifecycle was about to act in a namespace it must never touch."""


@dataclass(frozen=True)
class CallResult:
    outcome: str  # "done" | "already_absent"
    object: dict | None = None


def protected_namespaces(extra: Iterable[str] = ()) -> frozenset[str]:
    return frozenset(ALWAYS_PROTECTED) | {n.strip() for n in extra if n and n.strip()}


class Cluster:
    """Namespaced get/list/patch/delete of the kinds the lifecycle touches.

    ``api_client`` is a ``kubernetes.client.ApiClient``; ``protected`` is the set of namespaces
    refused outright. ``suspension_host``/``suspension_port``: where the suspension page is served
    (the ExternalName of the suspension Service Ingresses point to in grace); ``snapshot_class``:
    the ``VolumeSnapshotClass`` of expiry snapshots (None: the cluster's default class).
    """

    def __init__(
        self,
        api_client: Any,
        *,
        protected: Iterable[str] = (),
        request_timeout: float = 30.0,
        suspension_host: str = DEFAULT_SUSPENSION_HOST,
        suspension_port: int = 80,
        snapshot_class: str | None = None,
    ) -> None:
        import kubernetes.client as k8s

        self._k8s = k8s
        self.api_client = api_client
        self.protected = protected_namespaces(protected)
        self.request_timeout = request_timeout
        self.suspension_host = suspension_host
        self.suspension_port = suspension_port
        self.snapshot_class = snapshot_class
        self._apis: dict[str, Any] = {}

    def _api(self, kind: str):
        cls_name, suffix = KINDS.get(kind, ("CustomObjectsApi", None))
        if cls_name not in self._apis:
            self._apis[cls_name] = getattr(self._k8s, cls_name)(self.api_client)
        return self._apis[cls_name], suffix

    def _fn(self, verb: str, kind: str) -> Callable[..., Any]:
        """The client method for ``verb`` (list, read, create, replace, patch, delete) on ``kind``,
        called as ``fn(namespace, [name,] [body,] **kw)``."""
        api, suffix = self._api(kind)
        if suffix is not None:
            fn = getattr(api, f"{verb}_namespaced_{suffix}")
            if verb in ("read", "replace", "patch", "delete"):
                return lambda ns, name, *rest, **kw: fn(name, ns, *rest, **kw)
            return lambda ns, *rest, **kw: fn(ns, *rest, **kw)
        group, version, plural = CUSTOM_KINDS[kind]
        fn = getattr(api, f"{'get' if verb == 'read' else verb}_namespaced_custom_object")
        if verb in ("read", "replace", "patch", "delete"):
            return lambda ns, name, *rest, **kw: fn(group, version, ns, plural, name, *rest, **kw)
        return lambda ns, *rest, **kw: fn(group, version, ns, plural, *rest, **kw)

    def guard(self, namespace: str) -> None:
        if namespace in self.protected:
            raise ProtectedNamespaceError(
                f"refusing to act in protected namespace {namespace!r} (protected: "
                f"{', '.join(sorted(self.protected))}); fix the deployments row that names it."
            )

    def _call(self, method: str, kind: str, namespace: str, name: str | None, fn: Callable[[], Any]) -> Any:
        self.guard(namespace)
        target = f"{kind} {namespace}/{name}" if name else f"{kind} list in {namespace}"
        try:
            response = fn()
        except self._k8s.ApiException as exc:
            if exc.status == 404:
                return None
            raise ClusterCallError(
                f"Kubernetes {method} of {target} failed with HTTP {exc.status} ({_reason(exc)}); "
                + _advice(exc.status),
                status=exc.status,
            ) from None
        except Exception as exc:  # connection refused, timeouts: urllib3 errors
            raise ClusterCallError(
                f"Kubernetes {method} of {target} could not reach the API server: {exc.__class__.__name__}: {exc}; "
                "check KUBECONFIG, then re-run grace_period_job."
            ) from None
        return json.loads(response.data) if response.data else {}

    # reads
    def list(self, kind: str, namespace: str, label_selector: str) -> list[dict]:
        fn = self._fn("list", kind)
        body = self._call(
            "LIST",
            kind,
            namespace,
            None,
            lambda: fn(
                namespace, label_selector=label_selector, _preload_content=False, _request_timeout=self.request_timeout
            ),
        )
        return list((body or {}).get("items") or [])

    def get(self, kind: str, namespace: str, name: str) -> dict | None:
        fn = self._fn("read", kind)
        return self._call(
            "GET",
            kind,
            namespace,
            name,
            lambda: fn(namespace, name, _preload_content=False, _request_timeout=self.request_timeout),
        )

    # writes
    def delete(self, kind: str, namespace: str, name: str) -> CallResult:
        fn = self._fn("delete", kind)
        body = self._call(
            "DELETE",
            kind,
            namespace,
            name,
            lambda: fn(
                namespace,
                name,
                propagation_policy="Background",
                _preload_content=False,
                _request_timeout=self.request_timeout,
            ),
        )
        return CallResult("already_absent" if body is None else "done", body)

    def create(self, kind: str, namespace: str, body: dict) -> CallResult:
        """POST ``body``; an object of that name that exists already answers ``"exists"`` with it."""
        fn = self._fn("create", kind)
        name = body["metadata"]["name"]
        try:
            created = self._call(
                "POST",
                kind,
                namespace,
                name,
                lambda: fn(namespace, body, _preload_content=False, _request_timeout=self.request_timeout),
            )
        except ClusterCallError as exc:
            if exc.status != 409:
                raise
            existing = self.get(kind, namespace, name)
            if existing is None:
                raise
            return CallResult("exists", existing)
        return CallResult("done", created)

    def replace(self, kind: str, namespace: str, obj: dict) -> CallResult:
        """PUT ``obj`` (it carries the ``resourceVersion`` it was read at: a stale one answers 409)."""
        fn = self._fn("replace", kind)
        name = obj["metadata"]["name"]
        body = self._call(
            "PUT",
            kind,
            namespace,
            name,
            lambda: fn(namespace, name, obj, _preload_content=False, _request_timeout=self.request_timeout),
        )
        return CallResult("already_absent" if body is None else "done", body)


def _advice(status: int | None) -> str:
    if status == 403:
        return "the service account lacks permission: grant it, then re-run grace_period_job."
    if status == 409:
        return "the object changed while we acted; the next run reads it again and retries."
    if status == 422:
        return "the API server refused the object as invalid; this is a bug in the pipeline, report it."
    return "the step is not done; re-run grace_period_job once the API answers."


def _reason(exc: Any) -> str:
    try:
        return json.loads(exc.body).get("message") or exc.reason
    except Exception:
        return str(exc.reason)


def labels_of(obj: dict) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}
