"""The Kubernetes cluster as a Dagster resource (official ``kubernetes`` client).

Configuration, each optional:

* ``kubeconfig``: path to a kubeconfig; default the ``KUBECONFIG`` environment variable, then
  ``~/.kube/config``; with none of them, the in-cluster service account.
* ``protected_namespaces``: namespaces never touched, on top of ``kube-system``, ``kube-public``
  and ``default`` (comma-separated in ``BILLING_PROTECTED_NAMESPACES``).
* ``dry_run``: record what the lifecycle would do and do nothing (``BILLING_LIFECYCLE_DRY_RUN``
  = 1/true/yes).
* ``suspension_host`` / ``suspension_port``: the host (and port) serving the "suspended, add
  credits" page; in grace every Ingress backend points to a Service of type ExternalName to it
  (``BILLING_SUSPENSION_HOST``, default ``suspended.satusky.io``; ``BILLING_SUSPENSION_PORT``, 80).
  A Service of the platform's own in another namespace is reached as
  ``<name>.<namespace>.svc.cluster.local``.
* ``snapshot_class``: the ``VolumeSnapshotClass`` of the snapshots taken under
  ``volume_policy=snapshot`` (``BILLING_SNAPSHOT_CLASS``; default the cluster's default class).
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from billing_pipeline.core.errors import ConfigurationError
from billing_pipeline.resources.cluster import (
    DEFAULT_SUSPENSION_HOST,
    Cluster,
    protected_namespaces,
    snapshot_class_from_env,
)

_TRUE = {"1", "true", "yes", "on"}


class KubernetesResource(dg.ConfigurableResource):
    """Where the cluster is, what it must never touch, and whether to act at all."""

    kubeconfig: str | None = None
    context: str | None = None
    protected_namespaces: str | None = None
    dry_run: bool | None = None
    request_timeout_seconds: float = 30.0
    suspension_host: str | None = None
    suspension_port: int | None = None
    snapshot_class: str | None = None

    @classmethod
    def from_env(cls) -> KubernetesResource:
        """The resource as the environment configures it (the command line uses this)."""
        dry = os.environ.get("BILLING_LIFECYCLE_DRY_RUN")
        return cls(
            kubeconfig=os.environ.get("KUBECONFIG") or None,
            protected_namespaces=os.environ.get("BILLING_PROTECTED_NAMESPACES") or None,
            dry_run=None if dry is None else dry.strip().lower() in _TRUE,
            suspension_host=os.environ.get("BILLING_SUSPENSION_HOST") or None,
            suspension_port=int(os.environ["BILLING_SUSPENSION_PORT"])
            if os.environ.get("BILLING_SUSPENSION_PORT")
            else None,
            snapshot_class=snapshot_class_from_env(),
        )

    def _resolved_kubeconfig(self) -> str | None:
        path = self.kubeconfig or os.environ.get("KUBECONFIG")
        if path:
            return path.split(os.pathsep)[0]
        default = Path.home() / ".kube" / "config"
        return str(default) if default.exists() else None

    def missing_configuration(self) -> str | None:
        """Why no cluster can be reached, or None: no kubeconfig (``KUBECONFIG``, ``~/.kube/config``)
        and not running in a pod (``KUBERNETES_SERVICE_HOST``). Read when asked, not at load time."""
        if self._resolved_kubeconfig() or os.environ.get("KUBERNETES_SERVICE_HOST"):
            return None
        return "no Kubernetes cluster is configured (KUBECONFIG is not set, no ~/.kube/config, not in a pod)"

    def is_dry_run(self) -> bool:
        if self.dry_run is not None:
            return self.dry_run
        return (os.environ.get("BILLING_LIFECYCLE_DRY_RUN") or "").strip().lower() in _TRUE

    def protected(self) -> frozenset[str]:
        extra = self.protected_namespaces
        if extra is None:
            extra = os.environ.get("BILLING_PROTECTED_NAMESPACES", "")
        return protected_namespaces(extra.split(","))

    def cluster(self, **kwargs) -> Cluster:
        """A ``Cluster`` bound to the configured API server."""
        import kubernetes

        path = self._resolved_kubeconfig()
        try:
            if path:
                api_client = kubernetes.config.new_client_from_config(config_file=path, context=self.context)
            else:
                kubernetes.config.load_incluster_config()
                api_client = kubernetes.client.ApiClient()
        except Exception as exc:
            raise ConfigurationError(
                f"Cannot configure the Kubernetes client ({exc.__class__.__name__}: {exc}). Set KUBECONFIG "
                "to a kubeconfig file, or run inside the cluster with a service account."
            ) from None
        port = self.suspension_port or int(os.environ.get("BILLING_SUSPENSION_PORT") or 80)
        return Cluster(
            api_client,
            protected=self.protected(),
            request_timeout=self.request_timeout_seconds,
            suspension_host=self.suspension_host
            or os.environ.get("BILLING_SUSPENSION_HOST")
            or DEFAULT_SUSPENSION_HOST,
            suspension_port=port,
            snapshot_class=self.snapshot_class or snapshot_class_from_env(),
            **kwargs,
        )
