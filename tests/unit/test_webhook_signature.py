"""The webhook signature is the documented formula (README, resources/notify.py):
``sha256=HMAC_SHA256(secret, "<timestamp>.<raw body>")``, checked against answers computed here
with ``hmac`` alone, never with the product's own checker."""

from __future__ import annotations

import hashlib
import hmac

from billing_pipeline.resources.notify import sign_webhook, verify_webhook_signature

SECRET = "whsec_test_not_a_real_secret"
BODY = b'{"kind":"low_balance","account_id":"acme"}'
AT = 1793491200  # 2026-11-01T00:00:00Z
# Computed once from the formula with Python's hmac (see independent() below) and written down,
# so a change of formula cannot move both sides of the comparison.
KNOWN = "sha256=7e904c1c6af7d78940c388a7b61acff556f1906d7e5fff1c845261a45978f82a"


def independent(secret: str, timestamp: int, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def test_the_signature_is_the_known_answer_of_the_documented_formula():
    assert independent(SECRET, AT, BODY) == KNOWN
    assert sign_webhook(SECRET, AT, BODY) == KNOWN


def test_the_signature_binds_the_timestamp():
    # The same body signed a minute later is another signature, and the first one is refused for
    # it (inside the tolerance, so it is the signature that refuses it, not the age).
    later = AT + 60
    assert sign_webhook(SECRET, later, BODY) == independent(SECRET, later, BODY) != KNOWN
    assert verify_webhook_signature(SECRET, AT, BODY, KNOWN, now=AT)
    assert not verify_webhook_signature(SECRET, later, BODY, KNOWN, now=later)
    # A signature over the body alone (no timestamp) is not accepted either.
    body_only = "sha256=" + hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    assert not verify_webhook_signature(SECRET, AT, BODY, body_only, now=AT)
