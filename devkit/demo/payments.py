"""Deduction, alerts and a top-up against local emulators, for the demo command.

``run_payments_demo(database_url, now=..., start=..., end=...)`` starts localstripe, an SMTP
sink and a webhook receiver on 127.0.0.1, creates two demo accounts (idempotently) whose
balances sit below their thresholds, and then runs, as the jobs do:

1. usage settlement of ``[start, end)`` from ``fct_priced_usage`` (when given and built);
2. auto top-up: ``demo-topup`` is charged on a card that works, ``demo-declined`` on
   4000000000000341, which Stripe declines;
3. balance alerts and delivery: the emails and signed webhooks the emulators received.

It returns printable lines. Running it again posts nothing twice: the accounts exist, the
top-up is recorded, crossings are open and deliveries are marked delivered.

``local_payment_services()`` is the same set of emulators as a context manager that also
exports STRIPE_API_KEY / STRIPE_API_BASE / SMTP_* / BILLING_WEBHOOK_SECRET, so ``billing run``
(the Dagster jobs, through their resources) can talk to them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from billing_pipeline.alerts.balance import evaluate_balance_alerts
from billing_pipeline.alerts.delivery import deliver_due
from billing_pipeline.db.connection import connect
from billing_pipeline.ledger import Entry, balance_of, post_entries
from billing_pipeline.ledger.deduction import settle_priced_usage
from billing_pipeline.payments.topup import run_auto_topup
from billing_pipeline.resources.notify import NotifyResource, verify_webhook_signature
from billing_pipeline.resources.stripe import StripeResource
from devkit.clock import posted_at
from devkit.demo.platform import OPENING_CREDIT_AT
from devkit.emulators.smtp_sink import SmtpSink, start_smtp_sink
from devkit.emulators.stripe_emulator import (
    StripeEmulator,
    create_customer_with_card,
    payment_intents,
    start_stripe_emulator,
)
from devkit.emulators.webhook_receiver import WebhookReceiver, start_webhook_receiver

DEMO_WEBHOOK_SECRET = "demo-webhook-secret-not-for-production"
# account, name, card, opening credit, threshold, auto top-up amount, monthly limit
DEMO_ACCOUNTS = [
    ("demo-topup", "Demo: auto top-up", "4242424242424242", "4.50", "10", "50", "200"),
    ("demo-declined", "Demo: declining card", "4000000000000341", "3.25", "10", "50", "200"),
]


@dataclass
class LocalServices:
    stripe: StripeEmulator
    smtp: SmtpSink
    webhooks: WebhookReceiver

    def stripe_resource(self) -> StripeResource:
        return StripeResource(api_key=self.stripe.api_key, api_base=self.stripe.url)

    def notify_resource(self) -> NotifyResource:
        return NotifyResource(
            smtp_host=self.smtp.host,
            smtp_port=self.smtp.port,
            smtp_from="billing@satusky.demo",
            webhook_secret=DEMO_WEBHOOK_SECRET,
        )


@contextmanager
def local_payment_services() -> Iterator[LocalServices]:
    """Start the three emulators on 127.0.0.1 and export their settings; undo both on exit."""
    stripe = start_stripe_emulator()
    smtp = webhooks = None
    saved: dict[str, str | None] = {}
    try:
        smtp = start_smtp_sink()
        webhooks = start_webhook_receiver()
        env = {
            "STRIPE_API_KEY": stripe.api_key,
            "STRIPE_API_BASE": stripe.url,
            "SMTP_HOST": smtp.host,
            "SMTP_PORT": str(smtp.port),
            "SMTP_FROM": "billing@satusky.demo",
            "BILLING_WEBHOOK_SECRET": DEMO_WEBHOOK_SECRET,
        }
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        yield LocalServices(stripe, smtp, webhooks)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if webhooks:
            webhooks.stop()
        if smtp:
            smtp.stop()
        stripe.stop()


def prepare_demo_accounts(database_url: str, services: LocalServices) -> list[str]:
    """Create the demo accounts with saved cards on the emulator; existing ones are left as they are."""
    lines = []
    with connect(database_url) as conn:
        existing = {
            r[0]
            for r in conn.execute(
                "SELECT id FROM billing.accounts WHERE id = ANY(%s)", ([a[0] for a in DEMO_ACCOUNTS],)
            )
        }
        for account, name, card, opening, threshold, amount, limit in DEMO_ACCOUNTS:
            if account in existing:
                # Notices go to this run's receiver; the saved card stays (a fresh emulator does
                # not know it, so a charge due now would fail as resource_missing, and say so).
                conn.execute(
                    "UPDATE billing.accounts SET notify_webhook_url = %s WHERE id = %s",
                    (services.webhooks.url, account),
                )
                conn.commit()
                lines.append(f"  {account}: exists (created by an earlier demo run)")
                continue
            customer, method = create_customer_with_card(
                services.stripe.url, f"{account}@example.test", card, services.stripe.api_key
            )
            conn.execute(
                """
                INSERT INTO billing.accounts (id, name, email, low_balance_threshold, auto_topup_enabled,
                    auto_topup_threshold, auto_topup_amount, auto_topup_monthly_limit, stripe_customer_id,
                    stripe_payment_method_id, notify_email, notify_webhook_url)
                VALUES (%s, %s, %s, %s, true, %s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (id) DO NOTHING
                """,
                (
                    account,
                    name,
                    f"{account}@example.test",
                    Decimal(threshold),
                    Decimal(threshold),
                    Decimal(amount),
                    Decimal(limit),
                    customer,
                    method,
                    f"ops+{account}@example.test",
                    services.webhooks.url,
                ),
            )
            conn.commit()
            with posted_at(OPENING_CREDIT_AT):  # paid before the usage it pays for
                post_entries(
                    conn, [Entry(account, "topup", Decimal(opening), f"demo-opening:{account}", {"demo": True})]
                )
            lines.append(
                f"  {account}: created, opening credit {opening}, threshold {threshold}, "
                f"auto top-up {amount} (limit {limit}/month) on card ...{card[-4:]}"
            )
    return lines


def run_payments_demo(
    database_url: str, *, now: datetime | None = None, start: datetime | None = None, end: datetime | None = None
) -> list[str]:
    """Deduction, top-up and alerts against local emulators; returns the lines to print."""
    now = now or datetime.now(UTC)
    lines: list[str] = []
    with local_payment_services() as services:
        lines.append(
            f"Local services: Stripe emulator {services.stripe.url}, SMTP {services.smtp.host}:"
            f"{services.smtp.port}, webhooks {services.webhooks.url}"
        )
        lines += prepare_demo_accounts(database_url, services)

        if start is not None and end is not None:
            with connect(database_url, autocommit=True) as conn:
                settled = settle_priced_usage(conn, start, end)
            lines.append("Usage deduction (fct_priced_usage -> ledger):")
            lines.append(f"  {settled.summary()}")

        topup = run_auto_topup(database_url, services.stripe_resource(), now, account_id=None)
        lines.append("Auto top-up (Stripe PaymentIntent, off session, on the saved card):")
        lines.append(f"  {topup.summary()}")
        for account, amount, pi in topup.charged:
            lines.append(f"  {account}: charged {amount} credits ({pi})")
        for account, code in topup.failed:
            lines.append(
                f"  {account}: failed ({code}): the account is told; retry after a backoff, "
                "paused after 3 failures in a row"
            )
        for account, reason in topup.skipped:
            lines.append(f"  {account}: skipped, {reason}")
        charged = [pi for pi in payment_intents(services.stripe.url, services.stripe.api_key)]
        lines.append(
            f"  Stripe emulator holds {len(charged)} PaymentIntent(s): "
            + (", ".join(f"{p['id']} {p['status']} {p['amount'] / 100:.2f}" for p in charged) or "none")
        )

        with connect(database_url, autocommit=True) as conn:
            alerts = evaluate_balance_alerts(conn, now)
            delivery = deliver_due(conn, services.notify_resource(), now)
            balances = {a[0]: balance_of(conn, a[0]) for a in DEMO_ACCOUNTS}
        lines.append("Balance alerts and notifications:")
        lines.append(f"  {alerts.summary()}")
        lines.append(f"  {delivery.summary()}")
        for message in services.smtp.messages:
            lines.append(f"  email to {message['To']}: {message['Subject']}")
        for hook in services.webhooks.requests:
            valid = verify_webhook_signature(
                DEMO_WEBHOOK_SECRET,
                hook.headers.get("X-Satusky-Timestamp"),
                hook.body,
                hook.headers.get("X-Satusky-Signature", ""),
            )
            doc = json.loads(hook.body)
            lines.append(
                f"  webhook {doc['kind']} for {doc['account_id']}: signature "
                f"{'valid' if valid else 'INVALID'} (HMAC-SHA256)"
            )
        if not services.smtp.messages and not services.webhooks.requests:
            lines.append("  nothing new to send (every crossing was already notified)")
        lines.append("Balances: " + ", ".join(f"{a} {b}" for a, b in balances.items()))
    return lines


if __name__ == "__main__":  # pragma: no cover - manual use
    from devkit.demo.database import demo_database_url

    print("\n".join(run_payments_demo(demo_database_url())))
