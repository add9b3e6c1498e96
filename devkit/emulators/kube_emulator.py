"""A Kubernetes API emulator, spoken to over HTTP by the official ``kubernetes`` client.

No kube-apiserver can be installed on these machines, and ``kmock`` ignores label selectors and
``resourceVersion``. This emulator keeps objects in memory (127.0.0.1 only) and serves the
namespaced endpoints of the kinds the lifecycle touches:

* core/v1: services, configmaps, secrets, persistentvolumeclaims
* apps/v1: deployments
* networking.k8s.io/v1: ingresses
* snapshot.storage.k8s.io/v1: volumesnapshots (the CSI snapshot CRD)

**Emulated as kube-apiserver does it**

* GET (read; list with ``labelSelector``, equality- and set-based: ``k=v``, ``k==v``, ``k!=v``,
  ``k``, ``!k``, ``k in (a,b)``, ``k notin (a,b)``), POST (409 AlreadyExists), PUT (404 if absent),
  PATCH (JSON patch; merge patch; a strategic merge patch is applied as a merge patch), DELETE
  (404 NotFound if absent).
* Validation of every object written (``kube_rules``): the Kubernetes OpenAPI schema of the kind
  (strict, through ``kubernetes-validate``), and the API server's own rules for these kinds
  (Ingress ``rules``/``defaultBackend``, backends, immutable fields, names, label values).
  A refusal answers **422 Invalid** with ``details.causes``, in the ``Status`` shape of
  kube-apiserver; nothing is stored.
* ``resourceVersion``: a counter, bumped on every write; a PUT (or a patch that carries
  ``metadata.resourceVersion``) with a stale one answers **409 Conflict** ("the object has been
  modified; please apply your changes to the latest version and try again").
* Serialization in one canonical key order (sorted), whatever order the client sent, as the API
  server answers in its schema's field order: equal objects are byte-identical on the wire.
* ``metadata.uid`` and ``creationTimestamp`` set at creation and kept; ``apiVersion``/``kind``
  set from the endpoint.
* A VolumeSnapshot's ``status`` as the CSI snapshot controller sets it: ``readyToUse`` true at
  creation (``snapshot_mode = "ready"``), false until ``set_snapshot_ready`` (``"pending"``), or an
  ``error`` (``"error"``, or a source PVC that does not exist).

**Not emulated**: authentication and RBAC (403 only as an injected fault), watches, the
``/status`` and ``/scale`` subresources, server-side apply, field managers, finalizers and
graceful deletion (DELETE removes at once), garbage collection of owned objects, admission
webhooks, defaulting (no field is filled in), cluster-scoped kinds, delete-collection, paging,
field selectors, and any controller (a Deployment runs no pods; a PVC binds no volume).

Test hooks: ``fail`` injects an HTTP error per object; ``pause_after_write`` holds the answer
to a chosen write, already applied, until ``release`` (a test SIGKILLs the client meanwhile);
``calls`` records every request. Used by the tests and by the demo.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from devkit.emulators import kube_rules

# plural -> (api prefix, apiVersion, Kind)
RESOURCES: dict[str, tuple[str, str, str]] = {
    "services": ("/api/v1", "v1", "Service"),
    "configmaps": ("/api/v1", "v1", "ConfigMap"),
    "secrets": ("/api/v1", "v1", "Secret"),
    "persistentvolumeclaims": ("/api/v1", "v1", "PersistentVolumeClaim"),
    "deployments": ("/apis/apps/v1", "apps/v1", "Deployment"),
    "ingresses": ("/apis/networking.k8s.io/v1", "networking.k8s.io/v1", "Ingress"),
    "volumesnapshots": ("/apis/snapshot.storage.k8s.io/v1", "snapshot.storage.k8s.io/v1", "VolumeSnapshot"),
}
KIND_TO_PLURAL = {kind: plural for plural, (_, _, kind) in RESOURCES.items()}
WRITES = ("POST", "PUT", "PATCH", "DELETE")

_PATH = re.compile(
    r"^(?P<prefix>/api/v1|/apis/[a-z0-9.]+/v1)"
    r"/namespaces/(?P<ns>[^/]+)/(?P<plural>[a-z]+)(?:/(?P<name>[^/]+))?/?$"
)


@dataclass
class Call:
    """One request the emulator answered."""

    method: str
    kind: str | None
    namespace: str | None
    name: str | None
    query: dict[str, list[str]]
    status: int
    body: Any = None


@dataclass
class Fault:
    status: int
    methods: frozenset[str] | None  # None: every method
    times: int | None  # None: until cleared


@dataclass
class _Pause:
    remaining: int  # successful writes to let through before holding one
    reached: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    call: Call | None = None


@dataclass
class _State:
    objects: dict[tuple[str, str, str], dict] = field(default_factory=dict)  # (plural, ns, name)
    faults: dict[tuple[str, str, str], Fault] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    resource_version: int = 0
    snapshot_mode: str = "ready"  # "ready" | "pending" | "error"
    pause: _Pause | None = None
    # Called with (method, kind, ns, name) before a request is served; may block or raise.
    hook: Any = None


# --------------------------------------------------------------------------- label selectors

_SET_EXPR = re.compile(r"^\s*([^\s!=]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


def _split_selector(selector: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    if current.strip():
        parts.append(current)
    return parts


def matches_selector(labels: dict[str, str], selector: str | None) -> bool:
    """Whether ``labels`` satisfy a Kubernetes label selector string."""
    if not selector:
        return True
    for requirement in _split_selector(selector):
        req = requirement.strip()
        m = _SET_EXPR.match(req)
        if m:
            key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",") if v.strip()}
            inside = key in labels and labels[key] in values
            if (op == "in") != inside:
                return False
        elif "!=" in req:
            key, value = (s.strip() for s in req.split("!=", 1))
            if labels.get(key) == value:
                return False
        elif "==" in req or "=" in req:
            key, value = (s.strip() for s in re.split(r"==?", req, maxsplit=1))
            if labels.get(key) != value:
                return False
        elif req.startswith("!"):
            if req[1:].strip() in labels:
                return False
        elif req not in labels:
            return False
    return True


# --------------------------------------------------------------------------- patches


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    return [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]


def _json_patch(doc: Any, operations: list[dict]) -> Any:
    """RFC 6902 JSON patch (add, replace, remove, test)."""
    doc = copy.deepcopy(doc)
    for op in operations:
        parts = _pointer(op["path"])
        parent = doc
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        last = parts[-1] if parts else None
        kind = op["op"]
        if kind == "test":
            current = parent[int(last)] if isinstance(parent, list) else parent.get(last)
            if current != op.get("value"):
                raise ValueError(f"test failed at {op['path']}")
        elif kind in ("add", "replace"):
            if kind == "replace" and not isinstance(parent, list) and last not in parent:
                raise ValueError(f"replace of missing path {op['path']}")
            if isinstance(parent, list):
                if last == "-":
                    parent.append(op["value"])
                elif kind == "add":
                    parent.insert(int(last), op["value"])
                else:
                    parent[int(last)] = op["value"]
            else:
                parent[last] = op["value"]
        elif kind == "remove":
            if isinstance(parent, list):
                del parent[int(last)]
            elif last in parent:
                del parent[last]
            else:
                raise ValueError(f"remove of missing path {op['path']}")
        else:
            raise ValueError(f"unsupported JSON patch op {kind!r}")
    return doc


# --------------------------------------------------------------------------- the server


def _status(code: int, reason: str, message: str, details: dict | None = None) -> dict:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success" if code < 400 else "Failure",
        "message": message,
        "reason": reason,
        "details": details or {},
        "code": code,
    }


def _canonical(value: Any) -> Any:
    """One key order for every stored object, whatever order the client sent: kube-apiserver always
    serializes in its schema's field order, so equal objects are byte-identical on the wire."""
    if isinstance(value, dict):
        return {k: _canonical(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


def _group(api_version: str) -> str:
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


def _resource_name(plural: str, api_version: str) -> str:
    return f"{plural}.{_group(api_version)}" if _group(api_version) else plural


def _invalid(kind: str, api_version: str, name: str, causes: list[tuple[str, str]]) -> tuple[int, dict]:
    """422 Invalid, worded and shaped as kube-apiserver answers it."""
    qualified = f"{kind}.{_group(api_version)}" if _group(api_version) else kind
    text = ", ".join(f"{f}: {m}" for f, m in causes)
    return 422, _status(
        422,
        "Invalid",
        f'{qualified} "{name}" is invalid: {text}',
        {
            "name": name,
            "group": _group(api_version),
            "kind": kind,
            "causes": [{"reason": "FieldValueInvalid", "message": m, "field": f} for f, m in causes],
        },
    )


def _conflict(plural: str, api_version: str, name: str) -> tuple[int, dict]:
    return 409, _status(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {_resource_name(plural, api_version)} "{name}": '
        "the object has been modified; please apply your changes to the latest version and try again",
        {"name": name, "group": _group(api_version), "kind": plural},
    )


def _make_handler(state: _State, lock: threading.RLock):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # keep test output clean
            pass

        def _send(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            try:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the client died while we held the answer (a SIGKILL test)
                self.close_connection = True

        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            return json.loads(raw) if raw else None

        def _handle(self, method: str) -> None:
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            m = _PATH.match(unquote(parts.path))
            body = self._body() if method in ("POST", "PUT", "PATCH") else None
            if not m or m.group("plural") not in RESOURCES or RESOURCES[m.group("plural")][0] != m.group("prefix"):
                with lock:
                    state.calls.append(Call(method, None, None, None, query, 404, body))
                self._send(
                    404, _status(404, "NotFound", f"the server could not find the requested resource {parts.path}")
                )
                return
            plural, ns, name = m.group("plural"), m.group("ns"), m.group("name")
            if state.hook is not None:
                state.hook(method, RESOURCES[plural][2], ns, name)
            pause = None
            with lock:
                code, answer = self._serve(method, plural, ns, name, query, body)
                call = Call(
                    method,
                    RESOURCES[plural][2],
                    ns,
                    name or (answer.get("metadata") or {}).get("name"),
                    query,
                    code,
                    body,
                )
                state.calls.append(call)
                if method in WRITES and code < 300 and state.pause is not None:
                    if state.pause.remaining == 0:
                        pause, state.pause = state.pause, None
                        pause.call = call
                    else:
                        state.pause.remaining -= 1
            if pause is not None:  # applied, answer held: the client is killed meanwhile
                pause.reached.set()
                pause.release.wait(timeout=60)
            self._send(code, answer)

        def _serve(self, method, plural, ns, name, query, body) -> tuple[int, dict]:
            _, api_version, kind = RESOURCES[plural]
            key = (plural, ns, name)
            fault = state.faults.get(key) if name else None
            if fault and (fault.methods is None or method in fault.methods):
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        del state.faults[key]
                reason = {403: "Forbidden", 409: "Conflict", 500: "InternalError", 503: "ServiceUnavailable"}.get(
                    fault.status, "Error"
                )
                return fault.status, _status(
                    fault.status,
                    reason,
                    f'{_resource_name(plural, api_version)} "{name}" is {reason.lower()}: injected fault for '
                    f"{kind} {ns}/{name}",
                    {"name": name, "kind": plural},
                )
            if name is None:
                if method == "GET":
                    selector = (query.get("labelSelector") or [None])[0]
                    items = [
                        copy.deepcopy(obj)
                        for (p, n, _), obj in sorted(state.objects.items())
                        if p == plural and n == ns and matches_selector(obj["metadata"].get("labels") or {}, selector)
                    ]
                    return 200, {
                        "kind": f"{kind}List",
                        "apiVersion": api_version,
                        "metadata": {"resourceVersion": str(state.resource_version)},
                        "items": items,
                    }
                if method == "POST":
                    obj_name = (body.get("metadata") or {}).get("name")
                    key = (plural, ns, obj_name)
                    if key in state.objects:
                        return 409, _status(
                            409,
                            "AlreadyExists",
                            f'{_resource_name(plural, api_version)} "{obj_name}" already exists',
                            {"name": obj_name, "kind": plural},
                        )
                    return self._store(key, body, api_version, kind, old=None)
                return 405, _status(405, "MethodNotAllowed", f"{method} not supported on a collection")
            current = state.objects.get(key)
            if current is None:
                return 404, _status(
                    404,
                    "NotFound",
                    f'{_resource_name(plural, api_version)} "{name}" not found',
                    {"name": name, "kind": plural},
                )
            if method == "GET":
                return 200, copy.deepcopy(current)
            if method == "DELETE":
                del state.objects[key]
                return 200, copy.deepcopy(current)
            if method == "PUT":
                return self._store(key, body, api_version, kind, old=current)
            if method == "PATCH":
                content_type = self.headers.get("Content-Type", "")
                try:
                    patched = (
                        _json_patch(current, body) if "json-patch" in content_type else _merge_patch(current, body)
                    )
                except (ValueError, KeyError, IndexError, TypeError) as exc:
                    return _invalid(kind, api_version, name, [("<patch>", f"the patch could not be applied: {exc}")])
                if "json-patch" in content_type:  # a JSON patch does not carry a precondition
                    patched.setdefault("metadata", {})["resourceVersion"] = current["metadata"]["resourceVersion"]
                return self._store(key, patched, api_version, kind, old=current)
            return 405, _status(405, "MethodNotAllowed", f"{method} not supported")

        def _store(self, key, body, api_version, kind, *, old: dict | None) -> tuple[int, dict]:
            obj = copy.deepcopy(body) if isinstance(body, dict) else {}
            meta = obj.setdefault("metadata", {})
            if meta.get("name") not in (None, key[2]):
                return _invalid(
                    kind,
                    api_version,
                    key[2],
                    [("metadata.name", "Invalid value: the name of the object does not match the name on the URL")],
                )
            if old is not None:
                sent = meta.get("resourceVersion")
                if sent not in (None, "") and sent != old["metadata"]["resourceVersion"]:
                    return _conflict(key[0], api_version, key[2])
            meta["name"], meta["namespace"] = key[2], key[1]
            obj["apiVersion"], obj["kind"] = api_version, kind
            if old is None:
                meta["uid"] = str(uuid.uuid4())
                meta["creationTimestamp"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            else:
                meta["uid"], meta["creationTimestamp"] = old["metadata"]["uid"], old["metadata"]["creationTimestamp"]
                if kind == "VolumeSnapshot" and "status" in old:
                    obj["status"] = old["status"]  # status is the controller's, not the client's
            meta["resourceVersion"] = str(state.resource_version + 1)
            causes = kube_rules.check(obj, old)
            if causes:
                return _invalid(kind, api_version, key[2], causes)
            if kind == "VolumeSnapshot" and old is None:
                obj["status"] = self._snapshot_status(key[1], obj)
            state.resource_version += 1
            state.objects[key] = obj = _canonical(obj)
            return (201 if old is None else 200), copy.deepcopy(obj)

        def _snapshot_status(self, ns: str, obj: dict) -> dict:
            pvc = ((obj.get("spec") or {}).get("source") or {}).get("persistentVolumeClaimName")
            now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            source = state.objects.get(("persistentvolumeclaims", ns, pvc))
            if source is None or state.snapshot_mode == "error":
                why = (
                    f'failed to take snapshot of the volume: PersistentVolumeClaim "{pvc}" not found'
                    if source is None
                    else "failed to take snapshot of the volume: the CSI driver returned an error"
                )
                return {"readyToUse": False, "error": {"message": why, "time": now}}
            size = (((source.get("spec") or {}).get("resources") or {}).get("requests") or {}).get("storage")
            return {
                "readyToUse": state.snapshot_mode == "ready",
                "creationTime": now,
                "restoreSize": size,
                "boundVolumeSnapshotContentName": f"snapcontent-{obj['metadata']['uid']}",
            }

        def do_GET(self):
            self._handle("GET")

        def do_POST(self):
            self._handle("POST")

        def do_PUT(self):
            self._handle("PUT")

        def do_PATCH(self):
            self._handle("PATCH")

        def do_DELETE(self):
            self._handle("DELETE")

    return Handler


class KubeEmulator:
    """A stateful Kubernetes API on 127.0.0.1, in a background thread.

    ``with KubeEmulator() as kube: kube.write_kubeconfig(path)`` then point the official client
    at that kubeconfig. Objects can also be seeded and inspected directly (``put``/``get``/
    ``objects``) without going through HTTP.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._state = _State()
        self._lock = threading.RLock()
        self._server = ThreadingHTTPServer((host, port), _make_handler(self._state, self._lock))
        self._server.daemon_threads = True
        self._server.block_on_close = False  # idle keep-alive connections must not hold up stop()
        self._thread: threading.Thread | None = None

    # lifecycle
    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> KubeEmulator:
        self._thread = threading.Thread(target=self._server.serve_forever, name="kube-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> KubeEmulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def write_kubeconfig(self, path: str | Path) -> Path:
        """A kubeconfig whose current context points at this emulator (no auth)."""
        path = Path(path)
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "emulator",
                    "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
                    "users": [{"name": "emulator", "user": {"token": "emulator"}}],
                    "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "emulator"}}],
                }
            )
        )
        return path

    # direct state access (no HTTP)
    def put(self, kind: str, namespace: str, name: str, *, labels: dict | None = None, **fields: Any) -> dict:
        """Create or replace an object of ``kind`` ("Deployment", "Ingress", ...), validated as a write
        (``ValueError`` with the causes if the API server would refuse it)."""
        plural = KIND_TO_PLURAL[kind]
        _, api_version, _ = RESOURCES[plural]
        with self._lock:
            old = self._state.objects.get((plural, namespace, name))
            obj = {
                "apiVersion": api_version,
                "kind": kind,
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "labels": dict(labels or {}),
                    "uid": old["metadata"]["uid"] if old else str(uuid.uuid4()),
                    "resourceVersion": str(self._state.resource_version + 1),
                    "creationTimestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                },
                **copy.deepcopy(fields),
            }
            causes = kube_rules.check(obj, None)
            if causes:
                raise ValueError(f"{kind} {namespace}/{name} would be refused: {causes}")
            self._state.resource_version += 1
            self._state.objects[(plural, namespace, name)] = obj = _canonical(obj)
            return copy.deepcopy(obj)

    def get(self, kind: str, namespace: str, name: str) -> dict | None:
        with self._lock:
            obj = self._state.objects.get((KIND_TO_PLURAL[kind], namespace, name))
            return copy.deepcopy(obj)

    def objects(self) -> set[tuple[str, str, str]]:
        """Every object present, as (Kind, namespace, name)."""
        with self._lock:
            return {(RESOURCES[p][2], ns, n) for (p, ns, n) in self._state.objects}

    # faults and records
    def fail(
        self,
        kind: str,
        namespace: str,
        name: str,
        status: int = 403,
        *,
        methods: set[str] | None = None,
        times: int | None = None,
    ) -> None:
        """Make requests on one object answer ``status`` (``times`` times, or until ``clear_faults``)."""
        with self._lock:
            self._state.faults[(KIND_TO_PLURAL[kind], namespace, name)] = Fault(
                status, frozenset(m.upper() for m in methods) if methods else None, times
            )

    def clear_faults(self) -> None:
        with self._lock:
            self._state.faults.clear()

    def pause_after_write(self, n: int = 0) -> None:
        """Hold the answer to the ``n``-th next successful write (0: the next one), already applied,
        until ``release``; ``wait_paused`` tells when it is held."""
        with self._lock:
            self._state.pause = _Pause(n)
            self._pause = self._state.pause

    def wait_paused(self, timeout: float = 30.0) -> Call | None:
        """The held write, once it is held; None if the client finished (or died) without reaching it."""
        pause = getattr(self, "_pause", None)
        if pause is None or not pause.reached.wait(timeout):
            return None
        return pause.call

    def release(self) -> None:
        pause = getattr(self, "_pause", None)
        with self._lock:
            self._state.pause = None
        if pause is not None:
            pause.release.set()
            self._pause = None

    def set_snapshot_mode(self, mode: str) -> None:
        """How new VolumeSnapshots come out: ``ready``, ``pending`` (until ``set_snapshot_ready``) or ``error``."""
        assert mode in ("ready", "pending", "error")
        self._state.snapshot_mode = mode

    def set_snapshot_ready(self, namespace: str, name: str) -> None:
        """The snapshot controller finishing a pending snapshot."""
        with self._lock:
            obj = self._state.objects[("volumesnapshots", namespace, name)]
            obj["status"] = {**obj.get("status", {}), "readyToUse": True}
            obj["status"].pop("error", None)
            self._state.resource_version += 1
            obj["metadata"]["resourceVersion"] = str(self._state.resource_version)

    def set_hook(self, hook) -> None:
        """``hook(method, kind, namespace, name)`` runs before each request (may block or raise)."""
        self._state.hook = hook

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._state.calls)

    def successful(self, method: str) -> list[tuple[str, str, str]]:
        """(Kind, namespace, name) of each successful request of ``method``, in order."""
        return [(c.kind, c.namespace, c.name) for c in self.calls if c.method == method and c.status < 300]
