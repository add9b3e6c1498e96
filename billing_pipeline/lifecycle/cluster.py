"""The Kubernetes calls the lifecycle makes, through the official client, with its guards.

Objects travel as plain JSON dicts exactly as the API server returned them (the client's model
round-trip would rename ``pathType`` to ``path_type`` and lose what it does not know, and Ingress
rules must be restored exactly). Every call answers one of three ways:

* it worked (``"done"``), or the object is already gone (404: ``"already_absent"``);
* anything else (403, 5xx, connection refused) raises ``ClusterCallError`` naming the call.

``Cluster`` also refuses, before any request, to touch a protected namespace.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from billing_pipeline.errors import BillingError

DEPLOYMENT_ID_LABEL = "satusky.io/deployment-id"
ACCOUNT_ID_LABEL = "satusky.io/account-id"

ALWAYS_PROTECTED = ("kube-system", "kube-public", "default")

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
    refused outright. ``on_call`` (optional) is called as ``on_call(method, kind, ns, name)``
    before each request; tests use it to simulate a process killed mid-cleanup.
    """

    def __init__(self, api_client: Any, *, protected: Iterable[str] = (), request_timeout: float = 30.0,
                 on_call: Callable[[str, str, str, str | None], None] | None = None) -> None:
        import kubernetes.client as k8s

        self._k8s = k8s
        self.api_client = api_client
        self.protected = protected_namespaces(protected)
        self.request_timeout = request_timeout
        self.on_call = on_call
        self._apis: dict[str, Any] = {}

    def _api(self, kind: str):
        cls_name, suffix = KINDS[kind]
        if cls_name not in self._apis:
            self._apis[cls_name] = getattr(self._k8s, cls_name)(self.api_client)
        return self._apis[cls_name], suffix

    def guard(self, namespace: str) -> None:
        if namespace in self.protected:
            raise ProtectedNamespaceError(
                f"refusing to act in protected namespace {namespace!r} (protected: "
                f"{', '.join(sorted(self.protected))}); fix the deployments row that names it."
            )

    def _call(self, method: str, kind: str, namespace: str, name: str | None, fn: Callable[[], Any]) -> Any:
        self.guard(namespace)
        if self.on_call is not None:
            self.on_call(method, kind, namespace, name)
        target = f"{kind} {namespace}/{name}" if name else f"{kind} list in {namespace}"
        try:
            response = fn()
        except self._k8s.ApiException as exc:
            if exc.status == 404:
                return None
            raise ClusterCallError(
                f"Kubernetes {method} of {target} failed with HTTP {exc.status} ({_reason(exc)}); "
                + ("the service account lacks permission: grant it, then re-run grace_period_job."
                   if exc.status == 403 else "the step is not done; re-run grace_period_job once the API answers."),
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
        api, suffix = self._api(kind)
        fn = getattr(api, f"list_namespaced_{suffix}")
        body = self._call("LIST", kind, namespace, None, lambda: fn(
            namespace, label_selector=label_selector, _preload_content=False, _request_timeout=self.request_timeout))
        return list((body or {}).get("items") or [])

    def get(self, kind: str, namespace: str, name: str) -> dict | None:
        api, suffix = self._api(kind)
        fn = getattr(api, f"read_namespaced_{suffix}")
        return self._call("GET", kind, namespace, name, lambda: fn(
            name, namespace, _preload_content=False, _request_timeout=self.request_timeout))

    # writes
    def delete(self, kind: str, namespace: str, name: str) -> CallResult:
        api, suffix = self._api(kind)
        fn = getattr(api, f"delete_namespaced_{suffix}")
        body = self._call("DELETE", kind, namespace, name, lambda: fn(
            name, namespace, propagation_policy="Background", _preload_content=False,
            _request_timeout=self.request_timeout))
        return CallResult("already_absent" if body is None else "done", body)

    def json_patch(self, kind: str, namespace: str, name: str, operations: list[dict]) -> CallResult:
        api, suffix = self._api(kind)
        fn = getattr(api, f"patch_namespaced_{suffix}")
        body = self._call("PATCH", kind, namespace, name, lambda: fn(
            name, namespace, operations, _content_type="application/json-patch+json",
            _preload_content=False, _request_timeout=self.request_timeout))
        return CallResult("already_absent" if body is None else "done", body)


def _reason(exc: Any) -> str:
    try:
        return json.loads(exc.body).get("message") or exc.reason
    except Exception:
        return str(exc.reason)


def labels_of(obj: dict) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}
