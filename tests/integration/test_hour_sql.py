"""The SQL spelling of the hour (the one the settlement matches ledger references and
idempotency keys on) is ``Hour.text``, in PostgreSQL."""

from datetime import UTC, datetime, timezone

import psycopg

from billing_pipeline.core.hours import HOUR_TEXT_SQL, Hour

TEN = datetime(2026, 11, 24, 10, tzinfo=UTC)


def test_sql_spells_the_hour_as_hour_text(db_url):
    # Under a session time zone that is not UTC, on both sides of a daylight-saving change.
    hours = [Hour(TEN), Hour(datetime(2026, 3, 29, 0, tzinfo=UTC)) + 1, Hour(datetime(2026, 10, 25, 0, tzinfo=UTC)) + 1]
    with psycopg.connect(db_url) as conn:
        conn.execute("SET TIME ZONE 'Europe/Berlin'")
        for hour in hours:
            (text,) = conn.execute(f"SELECT {HOUR_TEXT_SQL.format(col='%s::timestamptz')}", (hour.start,)).fetchone()
            assert text == hour.text


def test_the_database_reads_the_reference_form(db_url):
    # billing.ledger_entry_period (migration 0007) takes a usage entry's month from exactly this
    # spelling; an hour late on the last day of a month stays in that month.
    hour = Hour(datetime(2026, 11, 30, 23, tzinfo=UTC))
    with psycopg.connect(db_url) as conn:
        (period,) = conn.execute(
            "SELECT billing.ledger_entry_period('usage_deduction', %s::jsonb, now())",
            (f'{{"hour": "{hour.text}", "usage_kind": "machine_rental"}}',),
        ).fetchone()
    assert period.isoformat() == "2026-11-01"
