"""A small Kubernetes API emulator, spoken to over HTTP by the official ``kubernetes`` client.

No kube-apiserver can be installed on these machines, and ``kmock`` ignores label selectors,
which the lifecycle cleanup relies on. This emulator keeps objects in memory and serves the
namespaced endpoints of the kinds the lifecycle touches:

* core/v1: services, configmaps, secrets, persistentvolumeclaims
* apps/v1: deployments
* networking.k8s.io/v1: ingresses

It supports GET (read, and list with ``labelSelector``: ``k=v``, ``k==v``, ``k!=v``, ``k``,
``!k``, ``k in (a,b)``, ``k notin (a,b)``), POST (409 if it exists), PUT, PATCH (JSON patch,
merge patch; a strategic merge patch is applied as a merge patch), DELETE (404 if absent).
Faults can be injected per object (``fail``), and every request is recorded (``calls``).

It is used by the tests and by the demo; it binds to 127.0.0.1 only.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

# plural -> (api prefix, apiVersion, Kind)
RESOURCES: dict[str, tuple[str, str, str]] = {
    "services": ("/api/v1", "v1", "Service"),
    "configmaps": ("/api/v1", "v1", "ConfigMap"),
    "secrets": ("/api/v1", "v1", "Secret"),
    "persistentvolumeclaims": ("/api/v1", "v1", "PersistentVolumeClaim"),
    "deployments": ("/apis/apps/v1", "apps/v1", "Deployment"),
    "ingresses": ("/apis/networking.k8s.io/v1", "networking.k8s.io/v1", "Ingress"),
}
KIND_TO_PLURAL = {kind: plural for plural, (_, _, kind) in RESOURCES.items()}

_PATH = re.compile(
    r"^(?P<prefix>/api/v1|/apis/apps/v1|/apis/networking\.k8s\.io/v1)"
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
class _State:
    objects: dict[tuple[str, str, str], dict] = field(default_factory=dict)  # (plural, ns, name)
    faults: dict[tuple[str, str, str], Fault] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    resource_version: int = 0
    # Called with (method, plural, ns, name) before a request is served; may block or raise.
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
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Success" if code < 400 else "Failure",
        "message": message, "reason": reason, "details": details or {}, "code": code,
    }


def _make_handler(state: _State, lock: threading.RLock):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # keep test output clean
            pass

        def _send(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

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
                self._send(404, _status(404, "NotFound", f"the server could not find the requested resource {parts.path}"))
                return
            plural, ns, name = m.group("plural"), m.group("ns"), m.group("name")
            if state.hook is not None:
                state.hook(method, RESOURCES[plural][2], ns, name)
            with lock:
                code, answer = self._serve(method, plural, ns, name, query, body)
                state.calls.append(Call(method, RESOURCES[plural][2], ns, name, query, code, body))
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
                reason = {403: "Forbidden", 500: "InternalError", 503: "ServiceUnavailable"}.get(fault.status, "Error")
                return fault.status, _status(
                    fault.status, reason,
                    f'{plural} "{name}" is {reason.lower()}: injected fault for {kind} {ns}/{name}',
                    {"name": name, "kind": plural},
                )
            if name is None:
                if method == "GET":
                    selector = (query.get("labelSelector") or [None])[0]
                    items = [
                        copy.deepcopy(obj) for (p, n, _), obj in sorted(state.objects.items())
                        if p == plural and n == ns and matches_selector(obj["metadata"].get("labels") or {}, selector)
                    ]
                    return 200, {
                        "kind": f"{kind}List", "apiVersion": api_version,
                        "metadata": {"resourceVersion": str(state.resource_version)}, "items": items,
                    }
                if method == "POST":
                    obj_name = (body.get("metadata") or {}).get("name")
                    key = (plural, ns, obj_name)
                    if key in state.objects:
                        return 409, _status(409, "AlreadyExists", f'{plural} "{obj_name}" already exists',
                                            {"name": obj_name, "kind": plural})
                    return 201, self._store(key, body, api_version, kind, new=True)
                return 405, _status(405, "MethodNotAllowed", f"{method} not supported on a collection")
            current = state.objects.get(key)
            if current is None and method != "PUT":
                return 404, _status(404, "NotFound", f'{plural} "{name}" not found', {"name": name, "kind": plural})
            if method == "GET":
                return 200, copy.deepcopy(current)
            if method == "DELETE":
                del state.objects[key]
                return 200, _status(200, "", "", {"name": name, "kind": plural, "uid": current["metadata"]["uid"]})
            if method == "PUT":
                return (200 if current else 201), self._store(key, body, api_version, kind, new=current is None)
            if method == "PATCH":
                content_type = self.headers.get("Content-Type", "")
                try:
                    if "json-patch" in content_type:
                        patched = _json_patch(current, body)
                    else:
                        patched = _merge_patch(current, body)
                except (ValueError, KeyError, IndexError, TypeError) as exc:
                    return 422, _status(422, "Invalid", f"patch could not be applied: {exc}")
                patched["metadata"]["name"] = name
                patched["metadata"]["namespace"] = ns
                patched["metadata"]["uid"] = current["metadata"]["uid"]
                return 200, self._store(key, patched, api_version, kind, new=False)
            return 405, _status(405, "MethodNotAllowed", f"{method} not supported")

        def _store(self, key, body, api_version, kind, *, new: bool) -> dict:
            obj = copy.deepcopy(body)
            meta = obj.setdefault("metadata", {})
            meta["name"], meta["namespace"] = key[2], key[1]
            state.resource_version += 1
            meta["resourceVersion"] = str(state.resource_version)
            if new:
                meta["uid"] = str(uuid.uuid4())
                meta["creationTimestamp"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            else:
                old = state.objects[key]["metadata"]
                meta.setdefault("uid", old.get("uid"))
                meta.setdefault("creationTimestamp", old.get("creationTimestamp"))
            obj["apiVersion"], obj["kind"] = api_version, kind
            state.objects[key] = obj
            return copy.deepcopy(obj)

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
        self._thread: threading.Thread | None = None

    # lifecycle
    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "KubeEmulator":
        self._thread = threading.Thread(target=self._server.serve_forever, name="kube-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "KubeEmulator":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def write_kubeconfig(self, path: str | Path) -> Path:
        """A kubeconfig whose current context points at this emulator (no auth)."""
        path = Path(path)
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
            "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
            "users": [{"name": "emulator", "user": {"token": "emulator"}}],
            "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "emulator"}}],
        }))
        return path

    # direct state access (no HTTP)
    def put(self, kind: str, namespace: str, name: str, *, labels: dict | None = None, **fields: Any) -> dict:
        """Create or replace an object of ``kind`` ("Deployment", "Ingress", ...)."""
        plural = KIND_TO_PLURAL[kind]
        _, api_version, _ = RESOURCES[plural]
        with self._lock:
            self._state.resource_version += 1
            obj = {
                "apiVersion": api_version, "kind": kind,
                "metadata": {
                    "name": name, "namespace": namespace, "labels": dict(labels or {}),
                    "uid": str(uuid.uuid4()), "resourceVersion": str(self._state.resource_version),
                    "creationTimestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                },
                **copy.deepcopy(fields),
            }
            self._state.objects[(plural, namespace, name)] = obj
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
    def fail(self, kind: str, namespace: str, name: str, status: int = 403, *,
             methods: set[str] | None = None, times: int | None = None) -> None:
        """Make requests on one object answer ``status`` (``times`` times, or until ``clear_faults``)."""
        with self._lock:
            self._state.faults[(KIND_TO_PLURAL[kind], namespace, name)] = Fault(
                status, frozenset(m.upper() for m in methods) if methods else None, times
            )

    def clear_faults(self) -> None:
        with self._lock:
            self._state.faults.clear()

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
