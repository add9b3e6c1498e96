"""An HTTP server on 127.0.0.1 that records every webhook it receives, for tests and the demo.

``start_webhook_receiver()`` serves in a thread of this process; ``.requests`` holds
``(path, headers, body)``; ``.url`` is the address to configure as an account's webhook;
``.fail_next(n)`` answers the next n requests with 503, to exercise retries.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class ReceivedWebhook:
    path: str
    headers: dict[str, str]
    body: bytes


class WebhookReceiver:
    """A running webhook receiver."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[ReceivedWebhook] = []
        self._refuse = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    refuse = receiver._refuse > 0
                    if refuse:
                        receiver._refuse -= 1
                    else:
                        receiver._requests.append(ReceivedWebhook(self.path, dict(self.headers.items()), body))
                self.send_response(503 if refuse else 204)
                self.end_headers()

            def log_message(self, *args):  # keep test output quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks/billing"
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook-receiver", daemon=True)
        self._thread.start()

    @property
    def requests(self) -> list[ReceivedWebhook]:
        with self._lock:
            return list(self._requests)

    def fail_next(self, count: int) -> None:
        with self._lock:
            self._refuse = count

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> WebhookReceiver:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_webhook_receiver() -> WebhookReceiver:
    """Start a webhook receiver on 127.0.0.1 (a free port)."""
    return WebhookReceiver()
