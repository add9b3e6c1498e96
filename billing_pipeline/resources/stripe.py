"""Stripe as a Dagster resource: off-session PaymentIntents on a saved card, and finding them again.

Configuration: ``STRIPE_API_KEY`` (a secret: read from the environment when a charge is made, never
logged) and ``STRIPE_API_BASE`` (optional, e.g. the local emulator's URL). Unset fields fall back
to those environment variables when the resource is used, so a pipeline without Stripe
configured still runs every stage that does not charge anyone; charging then fails with a
``ConfigurationError`` that names the variable.

Every request is sent once (no automatic retries) with an explicit timeout: the client waits at
most ``CONNECT_TIMEOUT`` to connect and ``READ_TIMEOUT`` for each read of the answer
(``REQUEST_TIMEOUT`` together), instead of the library's 80 s default. The auto top-up's in-flight
window (``payments.topup.IN_FLIGHT_WINDOW``) is built on that figure.

The ``stripe`` package (0.12 s of imports, aiohttp with it) is imported when a charge or a
look-up is made, not when the definitions load: most hourly runs charge no one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import dagster as dg

if TYPE_CHECKING:
    import stripe

from billing_pipeline.core.errors import ConfigurationError

ATTEMPT_KEY_METADATA = "satusky_attempt_key"
ACCOUNT_METADATA = "satusky_account_id"

# requests' timeouts: to connect, then between bytes of the answer (Stripe sends it in one piece,
# so in practice the wait for the answer). Not a limit on how long Stripe itself may take to act
# on a request that reached it: payments.topup adds a margin for that.
CONNECT_TIMEOUT = timedelta(seconds=10)
READ_TIMEOUT = timedelta(seconds=30)
REQUEST_TIMEOUT = CONNECT_TIMEOUT + READ_TIMEOUT


@dataclass(frozen=True)
class PaymentOutcome:
    """What Stripe said about one PaymentIntent (or a refused confirmation)."""

    payment_intent_id: str | None
    status: str  # succeeded | failed | processing | unknown
    failure_code: str | None = None
    failure_message: str | None = None
    amount_cents: int | None = None


def _outcome_of(obj: Any) -> PaymentOutcome:
    pi = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
    status = pi["status"]
    error = pi.get("last_payment_error")
    if status == "succeeded":
        return PaymentOutcome(pi["id"], "succeeded", amount_cents=pi["amount"])
    if status in ("processing", "requires_capture"):
        return PaymentOutcome(pi["id"], "processing", amount_cents=pi["amount"])
    if status == "requires_action":
        # Off session nobody can complete 3-D Secure: the customer has to act.
        return PaymentOutcome(
            pi["id"],
            "failed",
            "authentication_required",
            "The card requires authentication, which cannot happen off session.",
            pi["amount"],
        )
    code = (error or {}).get("code") if error else None
    message = (error or {}).get("message") if error else None
    return PaymentOutcome(pi["id"], "failed", code or status, message or f"PaymentIntent is {status}", pi["amount"])


class StripeResource(dg.ConfigurableResource):
    """Stripe API access for auto top-ups."""

    api_key: str | None = None
    api_base: str | None = None
    currency: str = "usd"

    def missing_configuration(self) -> str | None:
        """Why nothing can be charged, or None (``STRIPE_API_KEY``, read when asked)."""
        return None if (self.api_key or os.environ.get("STRIPE_API_KEY")) else "STRIPE_API_KEY is not set"

    def check_configured(self) -> None:
        """Raise ``ConfigurationError`` now, before any attempt is recorded, if no key is set."""
        self._client()

    def _client(self) -> stripe.StripeClient:
        import stripe

        key = self.api_key or os.environ.get("STRIPE_API_KEY")
        if not key:
            raise ConfigurationError(
                "STRIPE_API_KEY is not set: auto top-up cannot charge anyone. Set it to the Stripe "
                "secret key (or a test key with STRIPE_API_BASE pointing at a local emulator)."
            )
        base = self.api_base or os.environ.get("STRIPE_API_BASE")
        kwargs: dict[str, Any] = {
            "max_network_retries": 0,
            "http_client": stripe.RequestsClient(
                timeout=(CONNECT_TIMEOUT.total_seconds(), READ_TIMEOUT.total_seconds())
            ),
        }
        if base:
            kwargs["base_addresses"] = {"api": base.rstrip("/")}
        return stripe.StripeClient(key, **kwargs)

    def charge_off_session(
        self,
        *,
        customer_id: str,
        payment_method_id: str,
        amount_cents: int,
        idempotency_key: str,
        metadata: dict[str, str],
    ) -> PaymentOutcome:
        """Create and confirm an off-session PaymentIntent; a decline is an outcome, not an error."""
        import stripe

        client = self._client()
        try:
            pi = client.v1.payment_intents.create(
                params={
                    "amount": amount_cents,
                    "currency": self.currency,
                    "customer": customer_id,
                    "payment_method": payment_method_id,
                    "off_session": True,
                    "confirm": True,
                    "metadata": metadata,
                },
                options={"idempotency_key": idempotency_key},
            )
        except stripe.CardError as exc:
            err = exc.error
            pi = getattr(err, "payment_intent", None) if err else None
            return PaymentOutcome(
                pi["id"] if pi else None,
                "failed",
                exc.code or "card_declined",
                exc.user_message or str(exc),
                amount_cents,
            )
        except stripe.InvalidRequestError as exc:
            # Stripe refused the request itself (customer or card gone, bad parameters): nothing
            # was charged, and trying again unchanged cannot succeed. Network errors, 5xx and
            # authentication problems are not caught: the attempt then stays pending and is
            # looked up by the next run.
            return PaymentOutcome(
                None, "failed", exc.code or "invalid_request", exc.user_message or str(exc), amount_cents
            )
        return _outcome_of(pi)

    def find_payment_intent(self, *, customer_id: str, attempt_key: str) -> PaymentOutcome | None:
        """The PaymentIntent created for ``attempt_key`` (by its metadata), or None if Stripe has none.

        With more than one (which ``payment_intents_by_attempt`` reports), a succeeded one wins.
        """
        found = self.payment_intents_by_attempt(customer_id=customer_id).get(attempt_key, [])
        if not found:
            return None
        return next((o for o in found if o.status == "succeeded"), found[0])

    def payment_intents_by_attempt(self, *, customer_id: str, max_pages: int = 50) -> dict[str, list[PaymentOutcome]]:
        """The customer's PaymentIntents that carry an attempt key in their metadata, by attempt key.

        Listing by customer is strongly consistent (search can lag by a minute); an emulator that
        refuses the customer filter is listed whole and filtered here. Raises if the customer has
        more than ``max_pages`` pages of PaymentIntents, rather than answer from part of them.
        """
        out: dict[str, list[PaymentOutcome]] = {}
        for pi in self._payment_intents_of(customer_id, max_pages):
            key = (pi.get("metadata") or {}).get(ATTEMPT_KEY_METADATA)
            if key:
                out.setdefault(key, []).append(_outcome_of(pi))
        return out

    def _payment_intents_of(self, customer_id: str, max_pages: int) -> Iterator[dict]:
        import stripe

        client = self._client()
        filtered = True
        try:
            page = client.v1.payment_intents.list(params={"customer": customer_id, "limit": 100})
        except stripe.InvalidRequestError:
            filtered = False
            page = client.v1.payment_intents.list(params={"limit": 100})
        for _ in range(max_pages):
            for obj in page.data:
                pi = obj.to_dict()
                if filtered or pi.get("customer") == customer_id:
                    yield pi
            if not page.has_more or not page.data:
                return
            page = page.next_page()
        raise RuntimeError(f"Stripe customer {customer_id} has more than {max_pages} pages of PaymentIntents")


def stripe_resource() -> StripeResource:
    """The resource as definitions.py binds it: STRIPE_API_KEY (and STRIPE_API_BASE) are read from
    the environment when a charge is made, never at load time.

    So the definitions load the same whatever the environment held when they were imported (a
    long-lived process such as ``billing run`` executing runs in-process, or the code server),
    jobs that do not charge run without a key, and a missing key fails only the top-ups, with a
    ConfigurationError naming the variable. The key is never logged or shown in the UI.
    """
    return StripeResource()
