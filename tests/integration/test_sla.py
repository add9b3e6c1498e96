"""SLA credits (docs/rules/month-end.md) against real PostgreSQL: tiers, grace exclusion, probe gaps, once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal

import psycopg
import pytest

from billing_pipeline.invoicing.months import parse_month
from billing_pipeline.invoicing.sla import credit_sla
from tests.support.month_end import (
    create_platform,
    create_priced_usage_mart,
    insert_month_usage,
    insert_probe_month,
    record_transition,
)

MONTH = "2026-10"
START = datetime(2026, 10, 1, tzinfo=UTC)
MINUTES = 31 * 24 * 60  # 44,640
ACCOUNTS = {"acme": "dep-acme", "globex": "dep-globex", "initech": "dep-initech", "hooli": "dep-hooli"}


@pytest.fixture
def sla_db(db_url):
    with psycopg.connect(db_url) as conn:
        create_platform(conn, ACCOUNTS)
        create_priced_usage_mart(conn)
        insert_month_usage(conn, MONTH, ACCOUNTS, renters=[])
    return db_url


def measurement(conn, dep):
    row = conn.execute(
        "SELECT outcome, measured_minutes, down_minutes, unmeasured_minutes, excluded_minutes, availability, tier_id, "
        "base_amount, credit_amount FROM billing.sla_measurements WHERE deployment_id = %s",
        (dep,),
    ).fetchone()
    return dict(
        zip(("outcome", "measured", "down", "unmeasured", "excluded", "availability", "tier", "base", "credit"), row)
    )


def sla_entries(conn):
    return conn.execute(
        "SELECT account_id, amount, idempotency_key, reference FROM billing.credit_transactions "
        "WHERE type = 'sla_credit' ORDER BY id"
    ).fetchall()


def test_98_7_percent_gets_the_25_percent_credit_once_with_its_measurement(sla_db):
    down = round(MINUTES * Decimal("0.013"))  # 580 of 44,640 minutes down: 98.70%
    with psycopg.connect(sla_db) as conn:
        insert_probe_month(conn, "dep-acme", MONTH, down_minutes=down)
        insert_probe_month(conn, "dep-globex", MONTH, down_minutes=30)  # 99.93%: no credit
        insert_probe_month(conn, "dep-initech", MONTH, down_minutes=3000)  # 93.3%: 50%
        first = credit_sla(conn, parse_month(MONTH))
        second = credit_sla(conn, parse_month(MONTH))
        acme = measurement(conn, "dep-acme")
        base = conn.execute(
            "SELECT sum(amount) FROM analytics.fct_priced_usage WHERE deployment_id = 'dep-acme' "
            "AND usage_kind = 'workload_consumption'"
        ).fetchone()[0]
        entries = sla_entries(conn)
        outcomes = {d: measurement(conn, d)["outcome"] for d in ACCOUNTS.values()}

    assert first.credits_posted == 2 and second.credits_posted == 0 and second.measured == 0
    assert second.credits_already_posted == 2
    assert acme["measured"] == MINUTES and acme["down"] == down and acme["tier"] == "below_99"
    assert Decimal("0.987") < acme["availability"] < Decimal("0.9871")
    expected = (base * Decimal("0.25")).quantize(Decimal("0.000001"), rounding=ROUND_HALF_EVEN)
    assert acme["base"] == base and acme["credit"] == base * Decimal("0.25")  # exact; the entry is rounded
    assert outcomes == {
        "dep-acme": "credit",
        "dep-globex": "met",
        "dep-initech": "credit",
        "dep-hooli": "no_measurement",
    }
    account, amount, key, reference = entries[0]
    assert (account, amount, key) == ("acme", expected, "sla:dep-acme:2026-10")
    assert reference["measured_minutes"] == MINUTES and reference["down_minutes"] == down
    assert reference["unmeasured_minutes"] == 0 and reference["tier"] == "below_99"
    assert reference["base"] == str(base) and reference["month"] == "2026-10"
    assert first.no_measurement == ["dep-hooli"]


def test_minutes_in_grace_are_not_counted_as_down(sla_db):
    # Routing was off for non-payment from 10:30 on the 5th to 04:15 on the 6th (17h45 = 1,065 min):
    # the probes saw it down, but those minutes are excluded. The rest of the month is up.
    grace_from, grace_to = (
        START + timedelta(days=4, hours=10, minutes=30),
        START + timedelta(days=5, hours=4, minutes=15),
    )
    with psycopg.connect(sla_db) as conn:
        insert_probe_month(conn, "dep-acme", MONTH)
        conn.execute(
            "UPDATE billing.probe_deployment_hours p SET down_minutes = x.down, minute_states = x.states FROM ("
            "  SELECT hour, count(*) FILTER (WHERE m >= %(f)s AND m < %(t)s)::int AS down,"
            "         string_agg(CASE WHEN m >= %(f)s AND m < %(t)s THEN 'd' ELSE 'u' END, '' ORDER BY m) AS states"
            "  FROM billing.probe_deployment_hours, generate_series(hour, hour + interval '59 minutes', interval '1 minute') m"
            "  WHERE deployment_id = 'dep-acme' GROUP BY hour) x "
            "WHERE p.deployment_id = 'dep-acme' AND p.hour = x.hour",
            {"f": grace_from, "t": grace_to},
        )
        record_transition(conn, "acme", 1, "healthy", "low_balance", START + timedelta(days=3))
        record_transition(conn, "acme", 2, "low_balance", "grace_period", grace_from)
        record_transition(conn, "acme", 3, "grace_period", "healthy", grace_to)
        result = credit_sla(conn, parse_month(MONTH))
        acme = measurement(conn, "dep-acme")
        entries = sla_entries(conn)
    assert acme["excluded"] == 1065 and acme["down"] == 0 and acme["measured"] == MINUTES - 1065
    assert acme["unmeasured"] == 0 and acme["availability"] == 1 and acme["outcome"] == "met"
    assert result.credits_posted == 0 and entries == []


def test_a_probe_gap_is_reported_not_credited(sla_db):
    # The prober saw nothing for the first 5 hours: 300 unmeasured minutes, shown, not down.
    with psycopg.connect(sla_db) as conn:
        insert_probe_month(conn, "dep-acme", MONTH, skip_hours=5)
        credit_sla(conn, parse_month(MONTH))
        acme = measurement(conn, "dep-acme")
        entries = sla_entries(conn)
    assert acme["unmeasured"] == 300 and acme["measured"] == MINUTES - 300 and acme["down"] == 0
    assert acme["availability"] == 1 and acme["outcome"] == "met" and entries == []


def test_tiers_are_data(sla_db):
    with psycopg.connect(sla_db) as conn:
        conn.execute(
            "INSERT INTO billing.sla_credit_tiers (id, below_availability, credit_share) "
            "VALUES ('below_99_95', 0.9995, 0.05)"
        )
        insert_probe_month(conn, "dep-acme", MONTH, down_minutes=30)  # 99.933%: below 99.95%, not below 99.9%
        credit_sla(conn, parse_month(MONTH))
        assert measurement(conn, "dep-acme")["tier"] == "below_99_95"
