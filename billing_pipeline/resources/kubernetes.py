"""The Kubernetes cluster as a Dagster resource (official ``kubernetes`` client).

Configuration, each optional:

* ``kubeconfig``: path to a kubeconfig; default the ``KUBECONFIG`` environment variable, then
  ``~/.kube/config``; with none of them, the in-cluster service account.
* ``protected_namespaces``: namespaces never touched, on top of ``kube-system``, ``kube-public``
  and ``default`` (comma-separated in ``BILLING_PROTECTED_NAMESPACES``).
* ``dry_run``: record what the lifecycle would do and do nothing (``BILLING_LIFECYCLE_DRY_RUN``
  = 1/true/yes).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import dagster as dg

from billing_pipeline.errors import ConfigurationError
from billing_pipeline.lifecycle.cluster import Cluster, protected_namespaces

_TRUE = {"1", "true", "yes", "on"}


class KubernetesResource(dg.ConfigurableResource):
    """Where the cluster is, what it must never touch, and whether to act at all."""

    kubeconfig: Optional[str] = None
    context: Optional[str] = None
    protected_namespaces: Optional[str] = None
    dry_run: Optional[bool] = None
    request_timeout_seconds: float = 30.0

    @classmethod
    def from_env(cls) -> "KubernetesResource":
        """The resource as the environment configures it (the command line uses this)."""
        dry = os.environ.get("BILLING_LIFECYCLE_DRY_RUN")
        return cls(
            kubeconfig=os.environ.get("KUBECONFIG") or None,
            protected_namespaces=os.environ.get("BILLING_PROTECTED_NAMESPACES") or None,
            dry_run=None if dry is None else dry.strip().lower() in _TRUE,
        )

    def _resolved_kubeconfig(self) -> str | None:
        path = self.kubeconfig or os.environ.get("KUBECONFIG")
        if path:
            return path.split(os.pathsep)[0]
        default = Path.home() / ".kube" / "config"
        return str(default) if default.exists() else None

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
        return Cluster(api_client, protected=self.protected(), request_timeout=self.request_timeout_seconds, **kwargs)
