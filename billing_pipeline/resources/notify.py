"""Notifications as a Dagster resource: email over SMTP and webhooks signed with HMAC-SHA256.

Webhook requests carry the JSON body and these headers:

* ``X-Satusky-Timestamp``: Unix seconds when the request was signed;
* ``X-Satusky-Signature``: ``sha256=<hex>``, the HMAC-SHA256 with the deployment's secret
  (``BILLING_WEBHOOK_SECRET``) over ``<timestamp>.<raw body>``; binding the timestamp lets a
  receiver refuse replays older than a few minutes;
* ``X-Satusky-Delivery``: the notification id (the same on every retry, for de-duplication);
* ``X-Satusky-Event``: the notification kind.

Configuration: ``SMTP_HOST``, ``SMTP_PORT`` (default 25), ``SMTP_FROM``, optional
``SMTP_USERNAME``/``SMTP_PASSWORD`` (STARTTLS is used when a username is set) and
``BILLING_WEBHOOK_SECRET``. Unset fields fall back to those variables when used; a channel whose
configuration is missing is not attempted at all (``missing_configuration``): its deliveries stay
pending with their retries intact, and the delivery asset says which channel it skipped and why.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import smtplib
import time
import urllib.error
import urllib.request
from email.message import EmailMessage

import dagster as dg

from billing_pipeline.core.errors import ConfigurationError

SIGNATURE_HEADER = "X-Satusky-Signature"
TIMESTAMP_HEADER = "X-Satusky-Timestamp"


def sign_webhook(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Satusky-Signature`` value for a body sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify_webhook_signature(
    secret: str,
    timestamp: str | int,
    body: bytes,
    signature: str,
    *,
    tolerance_seconds: int | None = 300,
    now: float | None = None,
) -> bool:
    """What a receiver does: recompute the signature, compare in constant time, bound the age."""
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    if tolerance_seconds is not None and abs((now if now is not None else time.time()) - ts) > tolerance_seconds:
        return False
    return hmac.compare_digest(sign_webhook(secret, ts, body), signature or "")


class NotifyResource(dg.ConfigurableResource):
    """Sends notifications by email (SMTP) and signed webhook."""

    smtp_host: str | None = None
    smtp_port: int | None = None
    smtp_from: str | None = None
    smtp_username: str | None = None
    smtp_password: str | None = None
    webhook_secret: str | None = None
    timeout_seconds: float = 10.0

    def missing_configuration(self) -> dict[str, str]:
        """Channel -> why it cannot send (only the unconfigured ones), read when asked. A delivery on
        such a channel stays pending, its attempts untouched, until the channel is configured."""
        missing = {}
        if not (self.smtp_host or os.environ.get("SMTP_HOST")):
            missing["email"] = "SMTP_HOST is not set"
        if not (self.webhook_secret or os.environ.get("BILLING_WEBHOOK_SECRET")):
            missing["webhook"] = "BILLING_WEBHOOK_SECRET is not set"
        return missing

    def send_email(self, *, to: str, subject: str, body: str, message_id: str) -> None:
        host = self.smtp_host or os.environ.get("SMTP_HOST")
        if not host:
            raise ConfigurationError(
                "SMTP_HOST is not set: cannot send notification emails. Set SMTP_HOST and SMTP_PORT."
            )
        port = self.smtp_port or int(os.environ.get("SMTP_PORT", "25"))
        sender = self.smtp_from or os.environ.get("SMTP_FROM", "billing@satusky.io")
        username = self.smtp_username or os.environ.get("SMTP_USERNAME")
        password = self.smtp_password or os.environ.get("SMTP_PASSWORD")
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = sender, to, subject
        # A stable Message-ID lets mail systems drop the duplicate of a retried send.
        message["Message-ID"] = message_id
        message.set_content(body)
        with smtplib.SMTP(host, port, timeout=self.timeout_seconds) as smtp:
            if username:
                smtp.starttls()
                smtp.login(username, password or "")
            smtp.send_message(message)

    def post_webhook(self, *, url: str, body: bytes, event: str, delivery_id: str) -> None:
        secret = self.webhook_secret or os.environ.get("BILLING_WEBHOOK_SECRET")
        if not secret:
            raise ConfigurationError(
                "BILLING_WEBHOOK_SECRET is not set: webhooks are only sent signed. Set it to a long random string "
                "and share it with the receivers."
            )
        timestamp = int(time.time())
        request = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": "satusky-billing/1",
                TIMESTAMP_HEADER: str(timestamp),
                SIGNATURE_HEADER: sign_webhook(secret, timestamp, body),
                "X-Satusky-Delivery": delivery_id,
                "X-Satusky-Event": event,
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
                if not 200 <= response.status < 300:
                    raise RuntimeError(f"webhook {url} answered HTTP {response.status}")
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"webhook {url} answered HTTP {exc.code}") from None


def notify_resource() -> NotifyResource:
    """The resource as definitions.py binds it: SMTP settings and BILLING_WEBHOOK_SECRET are read
    from the environment when a notice is delivered, never at load time.

    So the alert job loads and queues notices even where delivery is not configured yet
    (deliveries then fail per channel with a ConfigurationError and are retried), and the
    definitions do not depend on what the environment held when they were imported.
    """
    return NotifyResource()
