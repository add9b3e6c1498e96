"""The ledger owns every reading of an entry (issue 21): its usage hour and period read one way in
SQL and in Python, and its idempotency keys minted in one module, exactly once across a change of
key format (keys are inside the hash, so entries already posted keep theirs)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import psycopg
import pytest

from billing_pipeline.cli.main import main
from billing_pipeline.ledger import Entry, EntryType, post_entry
from billing_pipeline.ledger.keys import entry_period, period_sql, usage_hour, usage_hour_sql
from tests.support.platform import create_accounts, ledger_rows

D = Decimal
POSTED = datetime(2026, 12, 1, 0, 30, tzinfo=UTC)  # created_at for the period's fallback

# (type, reference) -> the usage hour every reader must see (None: the entry settles no hour).
CASES = [
    (
        "usage_deduction",
        {"hour": "2026-11-30T23:00:00+00:00", "usage_kind": "workload_consumption"},
        datetime(2026, 11, 30, 23, tzinfo=UTC),
    ),
    # Naive text is UTC whatever the session's time zone (the test sets New York below).
    (
        "usage_deduction",
        {"hour": "2026-11-30T23:00:00", "usage_kind": "machine_rental"},
        datetime(2026, 11, 30, 23, tzinfo=UTC),
    ),
    (
        "reversal",
        {"hour": "2026-12-01T00:30:00+01:00", "usage_kind": "workload_consumption", "reverses": 1},
        datetime(2026, 11, 30, 23, 30, tzinfo=UTC),
    ),
    (
        "usage_deduction",
        {"hour": "2026-10-31 23:00Z", "usage_kind": "workload_consumption"},
        datetime(2026, 10, 31, 23, tzinfo=UTC),
    ),
    ("reversal", {"reverses": 7}, None),  # a reversal of an adjustment: no hour
    ("reversal", {"reverses": 7, "hour": "2026-11-02T10:00:00+00:00"}, None),  # no usage_kind: not usage
    ("topup", {"hour": "2026-11-02T10:00:00+00:00", "usage_kind": "workload_consumption"}, None),
    ("usage_deduction", {"hour": "soon", "usage_kind": "workload_consumption"}, None),
    ("sla_credit", {"month": "2026-10", "deployment_id": "d"}, None),
    ("admin_adjustment", {}, None),
]


def test_sql_and_python_read_an_entrys_usage_hour_and_period_alike(db_url):
    with psycopg.connect(db_url) as conn:
        conn.execute("SET TIME ZONE 'America/New_York'")
        for entry_type, reference, hour in CASES:
            sql_hour, sql_period = conn.execute(
                f"SELECT {usage_hour_sql('t')}, {period_sql('t')} "
                "FROM (SELECT %s::text AS type, %s::jsonb AS reference, %s::timestamptz AS created_at) t",
                (entry_type, json.dumps(reference), POSTED),
            ).fetchone()
            expected_period = (
                hour.date().replace(day=1)
                if hour
                else date(2026, 10, 1)
                if entry_type == "sla_credit"
                else date(2026, 12, 1)
            )
            assert usage_hour(entry_type, reference) == hour == sql_hour, (entry_type, reference)
            assert entry_period(entry_type, reference, POSTED) == expected_period == sql_period, (entry_type, reference)


@pytest.fixture
def cli_db(db_url):
    create_accounts(db_url, "acme", "globex")
    return db_url


def run(capsys, *argv: str) -> tuple[int, dict | str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, (json.loads(out) if "--json" in argv and code == 0 else out), err


def test_a_manual_topup_posted_under_its_bare_reference_is_not_posted_again(cli_db, capsys):
    # Posted before issue 21 as the command did then: the bare reference was the key.
    with psycopg.connect(cli_db) as conn:
        old = post_entry(
            conn,
            Entry("acme", EntryType.TOPUP, D("25"), "pay-7", reference={"payment_reference": "pay-7"}, actor="cli"),
        )
    code, again, _ = run(capsys, "topup", "acme", "25", "--reference", "pay-7", "--json")
    assert code == 0 and again["created"] is False and again["entry_id"] == old.entry_id
    # The same reference for another amount is a different payment: refused, nothing written.
    code, _, err = run(capsys, "topup", "acme", "30", "--reference", "pay-7")
    assert code == 2 and "pay-7" in err and "nothing was posted" in err
    # A new payment gets the namespaced key, exactly once.
    for created in (True, False):
        code, new, _ = run(capsys, "topup", "acme", "5", "--reference", "pay-8", "--json")
        assert code == 0 and new["created"] is created and new["idempotency_key"] == "topup:pay-8"
    assert [r[5] for r in ledger_rows(cli_db, "acme")] == ["pay-7", "topup:pay-8"]


def test_an_adjustment_keeps_its_derived_key_and_finds_a_bare_given_key(cli_db, capsys):
    argv = ["adjust", "acme", "-2.5", "--reason", "goodwill", "--actor", "ops", "--json"]
    code, first, _ = run(capsys, *argv)
    # The derived key's format is unchanged, so the same command run before the change is found.
    assert code == 0 and first["created"] is True and first["idempotency_key"].startswith("adjust:")
    assert len(first["idempotency_key"]) == len("adjust:") + 32
    code, second, _ = run(capsys, *argv)
    assert code == 0 and second["created"] is False and second["entry_id"] == first["entry_id"]
    with psycopg.connect(cli_db) as conn:
        bare = post_entry(
            conn, Entry("globex", EntryType.ADMIN_ADJUSTMENT, D("1"), "TICKET-9", reason="fix", actor="ops")
        )
    code, given, _ = run(
        capsys, "adjust", "globex", "1", "--reason", "fix", "--actor", "ops", "--key", "TICKET-9", "--json"
    )
    assert code == 0 and given["created"] is False and given["entry_id"] == bare.entry_id
    code, fresh, _ = run(
        capsys, "adjust", "globex", "1", "--reason", "fix", "--actor", "ops", "--key", "T-10", "--json"
    )
    assert code == 0 and fresh["created"] is True and fresh["idempotency_key"] == "adjust:key:T-10"
