"""What the Kubernetes API server refuses, for the emulator (``kube_emulator``).

Two layers, as in kube-apiserver:

1. **Schema**: the object against the Kubernetes OpenAPI schema of its kind (strict: unknown
   fields are refused), from the ``kubernetes-validate`` package when it is installed (a
   development dependency). Without it, this layer is skipped and ``SCHEMA_VALIDATION`` is False.
2. **The API server's own rules**, written in Go in kube-apiserver and therefore in no schema,
   coded here by hand for the kinds the lifecycle touches: object names; an Ingress needs
   ``rules`` or ``defaultBackend``, every backend exactly one of ``service``/``resource``, every
   service port exactly one of ``number``/``name``; an ``ExternalName`` Service needs its
   ``externalName``; immutable fields (``Deployment.spec.selector``, a PVC's spec except a storage
   increase, ``Service.spec.clusterIP``, ``VolumeSnapshot.spec.source``).

``check(obj, old)`` returns the causes (field, message) of a refusal, empty if the write is valid.
"""

from __future__ import annotations

import functools
import re
from typing import Any

_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
SCHEMA_VERSION = "1.30"

try:  # development dependency: the emulator works (hand rules only) without it
    import jsonschema
    from kubernetes_validate import utils as _kv
    from referencing import Registry, Resource

    SCHEMA_VALIDATION = True
except ImportError:  # pragma: no cover
    SCHEMA_VALIDATION = False


@functools.cache
def _validator(kind: str, api_version: str):
    if not SCHEMA_VALIDATION:
        return None
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    base = f"kubernetes-json-schema/v{_version()}-local-strict"
    try:
        schema = _kv.schema_contents(f"{base}/{kind.lower()}-{group_version}.json", SCHEMA_VERSION)
    except FileNotFoundError:
        return None  # a custom resource: its CRD schema is not bundled; the hand rules apply
    defs = _kv.schema_contents(f"{base}/_definitions.json", SCHEMA_VERSION)
    registry = Resource.from_contents(defs) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


def _version() -> str:
    return [v for v in _kv.all_versions() if _kv.major_minor(v) <= _kv.major_minor(SCHEMA_VERSION)][-1]


def _path(error) -> str:
    return ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in error.absolute_path).replace(".[", "[")


def check(obj: dict, old: dict | None = None) -> list[tuple[str, str]]:
    """Why the API server would refuse to store ``obj`` (replacing ``old``); empty if it accepts it."""
    causes: list[tuple[str, str]] = []
    validator = _validator(obj.get("kind", ""), obj.get("apiVersion", ""))
    if validator is not None:
        for error in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))[:5]:
            causes.append((_path(error) or "<root>", error.message))
    meta = obj.get("metadata") or {}
    name = meta.get("name") or ""
    pattern = _DNS1035_LABEL if obj.get("kind") == "Service" else _DNS1123_SUBDOMAIN
    limit = 63 if obj.get("kind") == "Service" else 253
    if not pattern.match(name) or len(name) > limit:
        causes.append(
            (
                "metadata.name",
                f"Invalid value: {name!r}: must be a lowercase RFC 1123 name of at most {limit} characters",
            )
        )
    for key, value in (meta.get("labels") or {}).items():
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            causes.append((f"metadata.labels.{key}", f"Invalid value: {value!r}: a valid label value"))
    rule = _RULES.get(obj.get("kind"))
    if rule:
        causes.extend(rule(obj.get("spec") or {}, (old or {}).get("spec") if old else None))
    return causes


def _backend(where: str, backend: Any) -> list[tuple[str, str]]:
    if not isinstance(backend, dict):
        return [(where, "Required value")]
    if ("service" in backend) == ("resource" in backend):
        return [(where, "Invalid value: exactly one of `service` or `resource` must be specified")]
    svc = backend.get("service")
    if svc is not None:
        port = (svc or {}).get("port") or {}
        if ("number" in port) == ("name" in port):
            return [(f"{where}.service.port", "Invalid value: exactly one of `name` or `number` must be specified")]
        if not svc.get("name"):
            return [(f"{where}.service.name", "Required value")]
    return []


def _ingress(spec: dict, old: dict | None) -> list[tuple[str, str]]:
    causes = []
    if not spec.get("rules") and not spec.get("defaultBackend"):
        causes.append(("spec", "Invalid value: either `defaultBackend` or `rules` must be specified"))
    if spec.get("defaultBackend") is not None:
        causes += _backend("spec.defaultBackend", spec["defaultBackend"])
    for i, rule in enumerate(spec.get("rules") or []):
        http = (rule or {}).get("http")
        if http is not None and not http.get("paths"):
            causes.append((f"spec.rules[{i}].http.paths", "Required value"))
        for j, path in enumerate((http or {}).get("paths") or []):
            causes += _backend(f"spec.rules[{i}].http.paths[{j}].backend", path.get("backend"))
    return causes


def _immutable(field: str, new: Any, old: Any) -> list[tuple[str, str]]:
    return [] if new == old else [(field, "Invalid value: field is immutable")]


def _deployment(spec: dict, old: dict | None) -> list[tuple[str, str]]:
    causes = [] if old is None else _immutable("spec.selector", spec.get("selector"), old.get("selector"))
    if (spec.get("replicas") or 0) < 0:
        causes.append(("spec.replicas", "Invalid value: must be greater than or equal to 0"))
    return causes


def _service(spec: dict, old: dict | None) -> list[tuple[str, str]]:
    causes = []
    if spec.get("type") == "ExternalName" and not spec.get("externalName"):
        causes.append(("spec.externalName", "Required value"))
    if spec.get("type") != "ExternalName" and not spec.get("ports"):
        causes.append(("spec.ports", "Required value"))
    if old is not None and old.get("clusterIP") and spec.get("clusterIP") not in (None, old.get("clusterIP")):
        causes += _immutable("spec.clusterIP", spec.get("clusterIP"), old.get("clusterIP"))
    return causes


def _pvc(spec: dict, old: dict | None) -> list[tuple[str, str]]:
    if old is None:
        return []
    strip = lambda s: {k: v for k, v in s.items() if k != "resources"}  # noqa: E731
    return (
        []
        if strip(spec) == strip(old)
        else [("spec", "Forbidden: spec is immutable after creation except resources.requests for bound claims")]
    )


def _volume_snapshot(spec: dict, old: dict | None) -> list[tuple[str, str]]:
    source = spec.get("source") or {}
    causes = []
    if ("persistentVolumeClaimName" in source) == ("volumeSnapshotContentName" in source):
        causes.append(
            (
                "spec.source",
                "Invalid value: exactly one of persistentVolumeClaimName and volumeSnapshotContentName must be set",
            )
        )
    if old is not None:
        causes += _immutable("spec.source", spec.get("source"), old.get("source"))
    return causes


_RULES = {
    "Ingress": _ingress,
    "Deployment": _deployment,
    "Service": _service,
    "PersistentVolumeClaim": _pvc,
    "VolumeSnapshot": _volume_snapshot,
}
