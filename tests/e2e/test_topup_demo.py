"""The payments part of the demo: a top-up, a decline, signed notices; a second run does nothing twice."""

from __future__ import annotations

from datetime import UTC, datetime, timezone

from devkit.demo.payments import run_payments_demo

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


def test_payments_demo_twice(db_url):
    first = "\n".join(run_payments_demo(db_url, now=NOW))
    assert "demo-topup: charged 50.00 credits (pi_" in first
    assert "demo-declined: failed (card_declined)" in first
    assert "webhook low_balance for demo-declined: signature valid" in first
    assert "INVALID" not in first
    assert "Balances: demo-topup 54.500000, demo-declined 3.250000" in first
    second = "\n".join(run_payments_demo(db_url, now=NOW))
    assert "0 charged" in second and "0 failed" in second
    assert "nothing new to send" in second
    assert "Balances: demo-topup 54.500000, demo-declined 3.250000" in second
