"""An HTTP proxy in front of the Stripe emulator that holds PaymentIntent creations.

``DelayingProxy(upstream, hold_seconds)`` listens on 127.0.0.1 (a free port; ``.url`` is the
``STRIPE_API_BASE`` to give the code under test) and forwards every request to ``upstream``
unchanged. ``POST /v1/payment_intents`` (a creation) is held ``hold_seconds`` first, and then
forwarded **whether or not the client is still waiting**: what a slow network or a load balancer
does with a request whose sender was killed. ``release()`` ends the holds early (so a test on
a busy machine need not pick a hold long enough for its slowest step). ``events`` records ``("received", path)`` and
``("forwarded", path)`` for each held request, in order; ``wait_for(kind, n)`` waits for them.

Runs in threads of the test process (the process under test is the one that gets killed).
"""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HELD_PATH = "/v1/payment_intents"


class DelayingProxy:
    def __init__(self, upstream: str, hold_seconds: float) -> None:
        self.upstream = urlsplit(upstream)
        self.hold_seconds = hold_seconds
        self.events: list[tuple[str, str]] = []
        self._released = threading.Event()
        self._cond = threading.Condition()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                held = self.command == "POST" and self.path.split("?")[0] == HELD_PATH
                if held:
                    proxy._record("received", self.path)
                    proxy._released.wait(proxy.hold_seconds)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                upstream = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
                try:
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    answer = upstream.getresponse()
                    data = answer.read()
                finally:
                    upstream.close()
                if held:
                    proxy._record("forwarded", self.path)
                try:
                    self.send_response(answer.status)
                    for name, value in answer.getheaders():
                        if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                            self.send_header(name, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client is gone (killed): the upstream has acted anyway
                    pass

            do_GET = do_POST = do_DELETE = _forward

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def release(self) -> None:
        """Forward the held requests now, and later ones without holding them."""
        self._released.set()

    def _record(self, kind: str, path: str) -> None:
        with self._cond:
            self.events.append((kind, path))
            self._cond.notify_all()

    def count(self, kind: str) -> int:
        with self._cond:
            return sum(1 for k, _ in self.events if k == kind)

    def wait_for(self, kind: str, n: int = 1, timeout: float = 60) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: sum(1 for k, _ in self.events if k == kind) >= n, timeout):
                raise AssertionError(f"the proxy saw {self.events}, not {n} x {kind} within {timeout} s")

    def __enter__(self) -> DelayingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
