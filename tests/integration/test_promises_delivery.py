"""README promises of notice delivery: the webhook's ``X-Satusky-Delivery`` id is stable across
retries (one id per notification), and email goes over STARTTLS when a username is given."""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
from datetime import UTC, datetime, timedelta, timezone
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import pytest

from billing_pipeline.alerts.delivery import deliver_due
from billing_pipeline.notifications.outbox import enqueue_notification
from billing_pipeline.resources.notify import NotifyResource, verify_webhook_signature
from devkit.emulators.smtp_sink import free_port
from tests.support.payments import WEBHOOK_SECRET, configure_account
from tests.support.platform import create_accounts

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


class RecordingReceiver:
    """An HTTP receiver that records every POST, the refused ones included, and refuses the first
    ``refuse`` with 503 (the devtools receiver keeps only the accepted ones)."""

    def __init__(self, refuse: int) -> None:
        self.seen: list[tuple[int, dict, bytes]] = []  # (status answered, headers, body)
        lock, receiver = threading.Lock(), self
        self.refuse = refuse

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    status = 503 if receiver.refuse > 0 else 204
                    receiver.refuse -= status == 503
                    receiver.seen.append((status, dict(self.headers.items()), body))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def receiver():
    r = RecordingReceiver(refuse=2)
    yield r
    r.stop()


def _notice(conn, account: str, key: str) -> int:
    with conn.transaction():
        enqueue_notification(
            conn,
            account_id=account,
            kind="low_balance",
            dedupe_key=key,
            subject=f"s {key}",
            body=f"b {key}",
            payload={"key": key},
        )
    return conn.execute("SELECT id FROM billing.notification_outbox WHERE dedupe_key = %s", (key,)).fetchone()[0]


def test_webhook_delivery_id_is_the_notification_id_on_every_retry(db_url, receiver):
    create_accounts(db_url, "acme")
    configure_account(db_url, "acme", notify_webhook_url=receiver.url)
    webhooks_only = NotifyResource(webhook_secret=WEBHOOK_SECRET)
    with psycopg.connect(db_url) as conn:
        first_id = _notice(conn, "acme", "crossing-1")
        # Refused twice (503), then accepted: three POSTs of one notification.
        for minutes in (0, 1, 3, 10):
            deliver_due(conn, webhooks_only, NOW + timedelta(minutes=minutes))
        second_id = _notice(conn, "acme", "crossing-2")
        deliver_due(conn, webhooks_only, NOW + timedelta(minutes=11))
    statuses = [s for s, _, _ in receiver.seen]
    ids = [h["X-Satusky-Delivery"] for _, h, _ in receiver.seen]
    assert statuses == [503, 503, 204, 204]
    assert first_id != second_id and ids == [str(first_id)] * 3 + [str(second_id)]
    # The body names the same id, and each retry is signed afresh over its own timestamp.
    assert [json.loads(b)["id"] for _, _, b in receiver.seen] == ids
    assert all(
        verify_webhook_signature(WEBHOOK_SECRET, h["X-Satusky-Timestamp"], b, h["X-Satusky-Signature"])
        for _, h, b in receiver.seen
    )


# --- STARTTLS ------------------------------------------------------------------------------------


@pytest.fixture
def tls_smtp(tmp_path):
    """An aiosmtpd server that refuses mail and login until the session is upgraded by STARTTLS."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    class Handler:
        def __init__(self):
            self.sessions: list[dict] = []

        async def handle_DATA(self, server, session, envelope):
            self.sessions.append(
                {
                    "tls": session.ssl is not None,
                    "login": session.auth_data,
                    "message": message_from_bytes(envelope.content, policy=policy.default),
                }
            )
            return "250 OK"

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (auth_data.login, auth_data.password) == (b"billing", b"s3cret")
        return AuthResult(success=ok, auth_data=auth_data.login.decode() if ok else None)

    handler = Handler()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=free_port(),
        tls_context=context,
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
    )
    controller.start()
    yield controller, handler
    controller.stop()


def test_email_goes_over_starttls_when_a_username_is_given(tls_smtp):
    controller, handler = tls_smtp
    notify = NotifyResource(
        smtp_host="127.0.0.1",
        smtp_port=controller.port,
        smtp_from="billing@satusky.test",
        smtp_username="billing",
        smtp_password="s3cret",
    )
    notify.send_email(to="ops@acme.test", subject="low balance", body="add credits", message_id="<n-1@test>")
    [session] = handler.sessions
    assert session["tls"] is True and session["login"] == "billing"
    assert session["message"]["Message-ID"] == "<n-1@test>" and session["message"]["Subject"] == "low balance"


def test_the_tls_server_refuses_a_session_that_was_not_upgraded(tls_smtp):
    """The control: the same server refuses plain text, so the test above proves the upgrade."""
    import smtplib

    controller, handler = tls_smtp
    with smtplib.SMTP("127.0.0.1", controller.port, timeout=10) as smtp, pytest.raises(smtplib.SMTPException):
        smtp.sendmail("billing@satusky.test", ["ops@acme.test"], "Subject: x\r\n\r\nplain")
    assert handler.sessions == []
