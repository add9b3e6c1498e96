"""One owner per reading (issue 21): the key formats, the time and month parsers, the chain
heads' digest and the monthly partitions' start. Pure functions; no services."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from billing_pipeline.core.clock import clock_input, parse_clock
from billing_pipeline.core.errors import ConfigurationError, InputError
from billing_pipeline.core.hours import Hour
from billing_pipeline.core.partitions import first_billable_month
from billing_pipeline.core.times import month_bounds, parse_month, parse_time
from billing_pipeline.ledger.checkpoint import chain_heads_digest
from billing_pipeline.ledger.entries import canonical_json
from billing_pipeline.ledger.keys import (
    adjustment_key,
    auto_topup_key,
    earlier_keys,
    manual_topup_key,
    reversal_key,
    sla_key,
    usage_key,
)


def test_every_key_format_in_one_place():
    hour = Hour(datetime(2026, 11, 24, 10, tzinfo=UTC)).text
    assert usage_key("acme", hour, "machine_rental") == "usage:acme:2026-11-24T10:00:00+00:00:machine_rental"
    assert usage_key("acme", hour, "machine_rental", 2).endswith(":machine_rental:3")
    assert sla_key("dep-1", date(2026, 10, 1)) == "sla:dep-1:2026-10"
    assert auto_topup_key("acme", 4) == "auto_topup:acme:4"
    assert manual_topup_key("pay-1") == "topup:pay-1"
    assert reversal_key(42) == "reversal:42" and reversal_key(42, 1) == "reversal:42:2"
    derived = adjustment_key("acme", Decimal("-2.5"), "goodwill", "ops", None)
    digest = hashlib.sha256(b"acme\x1f-2.5\x1fgoodwill\x1fops").hexdigest()[:32]
    assert derived == "adjust:" + digest  # the format posted before issue 21, unchanged
    assert adjustment_key("acme", Decimal("1"), "r", "a", "T-1") == "adjust:key:T-1"
    # What the same action was posted under before the namespaced formats.
    assert earlier_keys("topup:pay-1") == ["pay-1"] and earlier_keys("adjust:key:T-1") == ["T-1"]
    assert earlier_keys(derived) == [] and earlier_keys("usage:acme:x:y") == []


@pytest.mark.parametrize(
    "text", ["2026-1", "2026-11 ", " 2026-11", "2026-13", "9999-12", "1969-12", "2026/11", "٢٠٢٦-١١"]
)
def test_one_month_parser_takes_exactly_yyyy_mm(text):
    with pytest.raises(InputError, match="YYYY-MM"):
        parse_month(text)


def test_months_and_times_parse_one_way_everywhere():
    assert parse_month("2026-12") == date(2026, 12, 1)
    assert month_bounds(date(2026, 12, 1)) == (datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    moment = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
    for text in ("2026-11-24T10:30+01:00", "2026-11-24T09:30Z", "2026-11-24 09:30:00"):
        assert parse_time(text) == parse_clock(text) == clock_input(text, "--now") == moment
    with pytest.raises(InputError, match="--now 'yesterday'"):
        clock_input("yesterday", "--now")
    assert Hour.parse("2026-11-24T10:00Z") == Hour(datetime(2026, 11, 24, 10, tzinfo=UTC))


def test_monthly_partitions_start_at_the_first_billable_hours_month(monkeypatch):
    monkeypatch.setenv("BILLING_FIRST_HOUR", "2026-03-31T23:00:00-02:00")  # 2026-04-01T01:00Z
    assert first_billable_month() == date(2026, 4, 1)
    monkeypatch.setenv("BILLING_FIRST_HOUR", "next tuesday")
    with pytest.raises(ConfigurationError, match="BILLING_FIRST_HOUR"):
        first_billable_month()


def test_the_chain_heads_digest_is_over_their_canonical_json():
    heads = {"zürich": {"entries": 2, "last_id": 9, "head": "ab"}, "acme": {"entries": 1, "last_id": 3, "head": "cd"}}
    assert chain_heads_digest(heads) == hashlib.sha256(canonical_json(heads).encode()).hexdigest()
    assert canonical_json(heads).startswith('{"acme"') and "zürich" in canonical_json(heads)
