"""An SMTP server on 127.0.0.1 that keeps every message it receives (aiosmtpd), for tests and the demo.

``start_smtp_sink()`` runs it in a thread of this process; ``.messages`` holds the parsed
``email.message.EmailMessage`` objects; ``.fail_next(n)`` makes the next n messages be refused
with a temporary error (451), to exercise retries. ``.stop()`` shuts it down.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class _Handler:
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    refuse: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd hook
        with self.lock:
            if self.refuse > 0:
                self.refuse -= 1
                return "451 4.3.0 Temporarily refused by the test sink"
            self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 OK"


class SmtpSink:
    """A running SMTP sink."""

    def __init__(self, port: int | None = None) -> None:
        from aiosmtpd.controller import Controller

        self.host = "127.0.0.1"
        self.port = port or free_port()
        self._handler = _Handler()
        self._controller = Controller(self._handler, hostname=self.host, port=self.port)
        self._controller.start()

    @property
    def messages(self) -> list[EmailMessage]:
        with self._handler.lock:
            return list(self._handler.messages)

    @property
    def envelopes(self) -> list[tuple[str, list[str]]]:
        with self._handler.lock:
            return list(self._handler.envelopes)

    def fail_next(self, count: int) -> None:
        with self._handler.lock:
            self._handler.refuse = count

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> SmtpSink:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_smtp_sink(port: int | None = None) -> SmtpSink:
    """Start an SMTP sink on 127.0.0.1 (a free port unless given)."""
    return SmtpSink(port)
