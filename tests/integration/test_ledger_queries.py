"""The ledger's reads (billing_pipeline/ledger/queries.py): an account's entries page by page,
what a month's hours settled, and the usage entries of a month's hours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from billing_pipeline.db import connect
from billing_pipeline.ledger import Entry, EntryType, post_entry
from billing_pipeline.ledger.queries import ledger_page, usage_entries, usage_settled
from tests.support.platform import create_accounts

D = Decimal
UTC = UTC


@pytest.fixture
def ledger_db(db_url):
    create_accounts(db_url, "acme", "globex")
    return db_url


def post(url: str, entry: Entry) -> int:
    with connect(url) as conn:
        result = post_entry(conn, entry)
        conn.commit()
    return result.entry_id


def topup(account: str, amount: str, key: str) -> Entry:
    return Entry(account, EntryType.TOPUP, D(amount), key, reference={"payment_reference": key})


def usage(account: str, amount: str, key: str, hour: datetime, kind: str = "workload_consumption") -> Entry:
    return Entry(
        account, EntryType.USAGE_DEDUCTION, D(amount), key, reference={"hour": hour.isoformat(), "usage_kind": kind}
    )


def test_ledger_page_pages_newest_first_by_entry_id(ledger_db):
    ids = [post(ledger_db, topup("acme", str(n), f"p{n}")) for n in range(1, 6)]
    post(ledger_db, topup("globex", "99", "g1"))  # another account's entry never shows
    with connect(ledger_db) as conn:
        first = ledger_page(conn, "acme", limit=2)
        second = ledger_page(conn, "acme", limit=2, before=first.next_before)
        last = ledger_page(conn, "acme", limit=2, before=second.next_before)
        exact = ledger_page(conn, "acme", limit=5)
        stranger = ledger_page(conn, "nobody", limit=3)

    assert [e.amount for e in first.entries] == [D("5.000000"), D("4.000000")]
    assert [e.balance_after for e in first.entries] == [D("15.000000"), D("10.000000")]
    assert first.total_entries == 5 and first.next_before == ids[3]
    assert [e.id for e in second.entries] == [ids[2], ids[1]] and second.next_before == ids[1]
    assert [e.id for e in last.entries] == [ids[0]] and last.next_before is None
    assert (last.entries[0].type, last.entries[0].idempotency_key, last.entries[0].reference) == (
        "topup",
        "p1",
        {"payment_reference": "p1"},
    )
    # Exactly `limit` entries left: no next page to offer.
    assert [e.id for e in exact.entries] == ids[::-1] and exact.next_before is None
    assert stranger == ([], 0, None)


def test_usage_is_counted_by_its_usage_hour_whenever_it_was_posted(ledger_db):
    """usage_settled and usage_entries read the ledger's one usage hour (keys.usage_hour_sql):
    an entry counts for the hour it settles, not for when it was posted; top-ups, SLA credits,
    adjustments and a reversal that names no usage hour never count as usage."""
    hour_in = datetime(2026, 11, 24, 10, tzinfo=UTC)
    hour_before = hour_in - timedelta(hours=4)
    start, end = hour_in, hour_in + timedelta(days=1)
    post(ledger_db, topup("acme", "100", "p0"))
    early = post(ledger_db, usage("acme", "-1", "u-early", hour_in))
    post(ledger_db, topup("acme", "10", "p1"))
    post(ledger_db, Entry("acme", EntryType.SLA_CREDIT, D("3"), "sla1", reference={"deployment_id": "dep"}))
    adjustment = Entry("acme", EntryType.ADMIN_ADJUSTMENT, D("-2"), "adj1", reason="goodwill", actor="ops")
    adjusted = post(ledger_db, adjustment)
    late = post(ledger_db, usage("acme", "-4", "u-late", hour_before))  # an earlier hour
    rent = post(ledger_db, usage("acme", "-0.25", "u-rent", hour_in, kind="machine_rental"))
    settled = post(ledger_db, usage("acme", "-1.5", "u-in", hour_in))
    reversal = post(
        ledger_db,
        Entry(
            "acme",
            EntryType.REVERSAL,
            D("0.5"),
            "rev1",
            reference={"reverses": settled, "hour": hour_in.isoformat(), "usage_kind": "workload_consumption"},
        ),
    )
    # A reversal of the adjustment: it names no usage hour, so it is not usage.
    post(ledger_db, Entry("acme", EntryType.REVERSAL, D("2"), "rev2", reference={"reverses": adjusted}))
    post(ledger_db, usage("globex", "-7", "g-u", hour_in))  # another account's

    with connect(ledger_db) as conn:
        month = usage_settled(conn, "acme", start, end)
        hour_before_only = usage_settled(conn, "acme", hour_before, hour_before + timedelta(hours=1))
        entries = usage_entries(conn, "acme", start, end)

    assert month == D("-2.250000")  # the window's hours: -1 - 0.25 - 1.5 + 0.5
    assert hour_before_only == D("-4.000000")  # the late entry counts for its own hour

    # The window's hour only: rentals before consumption, then by entry id.
    assert [(e.entry_id, e.type, e.amount, e.usage_kind) for e in entries] == [
        (rent, "usage_deduction", D("-0.250000"), "machine_rental"),
        (early, "usage_deduction", D("-1.000000"), "workload_consumption"),
        (settled, "usage_deduction", D("-1.500000"), "workload_consumption"),
        (reversal, "reversal", D("0.500000"), "workload_consumption"),
    ]
    assert all(e.hour == hour_in and e.is_estimate is False for e in entries)
    assert late not in [e.entry_id for e in entries]
