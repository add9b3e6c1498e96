"""Issue 11, points 5, 6 and 8 (parsers): odd input gets one clear line and exit 2, never a
traceback, and nothing is written. Hypothesis checks the amount, time and month parsers."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timezone
from decimal import Decimal

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing_pipeline.cli import inputs
from billing_pipeline.cli.main import main
from billing_pipeline.core.errors import InputError
from billing_pipeline.core.times import month_bounds
from billing_pipeline.ledger import MAX_ENTRY_AMOUNT, Entry, LedgerInputError, post_entry
from billing_pipeline.ledger.entries import (
    GENESIS_HASH,
    MAX_ABS_AMOUNT,
    entry_hash,
    ledger_keyring,
    timestamp_text,
)
from tests.support.platform import create_accounts, ledger_rows

BAD_INPUT = [
    # point 5: tracebacks on main
    (("status", "acme", "--now", "yesterday"), "--now 'yesterday' is not an ISO 8601 time"),
    (("status", "acme", "--now", "2026-11-32T00:00"), "is not a valid time"),
    (("explain", "acme", "--month", "0000-01"), "is not a month"),
    (("explain", "acme", "--month", "9999-12"), "is not a month"),
    (("topup", "acme", "1e400", "--reference", "r"), "not a number the ledger takes"),
    (("cleanup-preview", "acme", "--now", "tomorrow"), "not an ISO 8601 time"),
    # point 6: accepted on main
    (("topup", "acme", "٥", "--reference", "r"), "ASCII"),
    (("topup", "acme", "１２", "--reference", "r"), "ASCII"),
    (("topup", "acme", "1_000", "--reference", "r"), "no exponent, no '_'"),
    (("topup", "acme", "99999999999999.999999", "--reference", "r"), "more than one entry may move"),
    (("topup", "acme", "1.0000001", "--reference", "r"), "more than six decimals"),
    (("topup", "acme", "5", "--reference", "r\nx"), "control character U+000A"),
    (("adjust", "acme", "5", "--reason", "ok\x1b[31mred", "--actor", "a"), "control character U+001B"),
    (("adjust", "acme", "5", "--reason", "why", "--actor", "eve\nmallory"), "control character U+000A"),
    (("adjust", "acme", "5", "--reason", "\u202egnp.exe", "--actor", "a"), "control character U+202E"),
    (("adjust", "acme", "5", "--reason", "x" * 501, "--actor", "a"), "at most 500"),
    # point 6: refused badly on main
    (("ledger", "acme", "--limit", "99999999999999999999"), "--limit '99999999999999999999' must be a whole number"),
    (("ledger", "acme", "--limit", "٥"), "must be a whole number"),
    (("ledger", "acme", "--limit", "0"), "--limit must be positive"),
]


@pytest.fixture
def cli_db(db_url):
    create_accounts(db_url, "acme")
    return db_url


def test_bad_input_gets_one_clear_line_and_exit_2(cli_db, capsys):
    for argv, message in BAD_INPUT:
        code = main(list(argv))
        out, err = capsys.readouterr()
        assert code == 2 and out == "", (argv, err)
        assert err.startswith("billing: ") and message in err, (argv, err)
        assert len(err.strip().splitlines()) == 1 and "\x1b" not in err and "Traceback" not in err, (argv, err)
    assert ledger_rows(cli_db) == []


def test_a_balance_that_would_overflow_is_refused_in_one_line(cli_db, capsys):
    # A balance near the top, as if grown over years: one entry signed with the ledger's key, so
    # posting signs onto it (a head it cannot verify is refused before any amount is checked).
    keyring = ledger_keyring()
    balance, created_at = MAX_ABS_AMOUNT - 5, datetime(2026, 1, 1, tzinfo=UTC)
    signed = entry_hash(
        prev_hash=GENESIS_HASH, account_id="acme", account_seq=1, type="topup", amount=balance,
        balance_after=balance, idempotency_key="big", reference_json="{}", reason=None, actor=None,
        created_at=timestamp_text(created_at), key_id=keyring.current_id, key=keyring.current_key,
    )  # fmt: skip
    with psycopg.connect(cli_db) as conn:
        conn.execute("SET session_replication_role = replica")  # the balance cache is not the point here
        conn.execute(
            "INSERT INTO billing.credit_transactions (account_id, account_seq, type, amount, balance_after, "
            "idempotency_key, reference, created_at, prev_hash, entry_hash, key_id) "
            "VALUES ('acme', 1, 'topup', %s, %s, 'big', '{}', %s, %s, %s, %s)",
            (balance, balance, created_at, GENESIS_HASH, signed, keyring.current_id),
        )
    assert main(["topup", "acme", "10", "--reference", "over"]) == 2
    err = capsys.readouterr().err
    assert "beyond what the ledger can hold" in err and len(err.strip().splitlines()) == 1
    with psycopg.connect(cli_db) as conn, pytest.raises(LedgerInputError, match="beyond what the ledger can hold"):
        post_entry(conn, Entry("acme", "topup", Decimal("10"), "over"))
    assert [r[5] for r in ledger_rows(cli_db)] == ["big"]


def test_the_ledger_itself_refuses_control_characters_and_oversized_entries(cli_db):
    with psycopg.connect(cli_db) as conn:
        for entry, message in [
            (Entry("acme", "admin_adjustment", Decimal("1"), "k1", reason="a\nb", actor="x"), "U\\+000A"),
            (Entry("acme", "admin_adjustment", Decimal("1"), "k2", reason="a", actor="\x1b[2J"), "U\\+001B"),
            (Entry("acme", "topup", MAX_ENTRY_AMOUNT + 1, "k3"), "more than one entry may move"),
        ]:
            with pytest.raises(LedgerInputError, match=message):
                post_entry(conn, entry)
    assert ledger_rows(cli_db) == []


# --- the parsers, under Hypothesis -------------------------------------------------------------

SETTINGS = settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(st.text(max_size=80))
def test_any_text_either_parses_to_a_bounded_amount_or_is_an_input_error(text):
    try:
        amount = inputs.parse_amount(text)
    except InputError as exc:
        assert "\n" not in str(exc)
        return
    assert isinstance(amount, Decimal) and amount.is_finite() and 0 < abs(amount) <= MAX_ENTRY_AMOUNT
    assert re.fullmatch(r"[+-]?[0-9]*\.?[0-9]*", text.strip(), re.ASCII)
    assert -amount.as_tuple().exponent <= 6


@SETTINGS
@given(
    st.decimals(min_value=Decimal("-1e9"), max_value=Decimal("1e9"), places=6, allow_nan=False).filter(lambda d: d != 0)
)
def test_every_amount_in_range_round_trips(amount):
    assert inputs.parse_amount(f"{amount:f}") == amount


@SETTINGS
@given(st.text(max_size=60))
def test_any_text_either_parses_to_an_aware_utc_time_or_is_an_input_error(text):
    try:
        moment = inputs.parse_time(text)
    except InputError as exc:
        assert "\n" not in str(exc)
        return
    assert moment.tzinfo == UTC and 1969 <= moment.year <= 9999


@SETTINGS
@given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9998, 12, 30), timezones=st.just(UTC)))
def test_every_iso_time_round_trips(moment):
    assert inputs.parse_time(moment.isoformat()) == moment
    assert inputs.parse_time(moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")) == moment


@SETTINGS
@given(st.text(max_size=20) | st.from_regex(r"[0-9]{4}-[0-9]{2}", fullmatch=True))
def test_any_text_either_parses_to_a_month_or_is_an_input_error(text):
    """One month parser (core.times) for the command line, close-month and the partitions:
    exactly YYYY-MM, nothing around it (issue 21: close-month took "2026-1" and "2026-11 ")."""
    try:
        month = inputs.parse_month(text)
    except InputError:
        return
    start, end = month_bounds(month)
    assert start.day == 1 and end.day == 1 and 28 <= (end - start).days <= 31
    assert start.strftime("%Y-%m") == text


@SETTINGS
@given(st.text(max_size=40))
def test_free_text_is_one_printable_line_or_refused(text):
    try:
        value = inputs.parse_text(text, what="--reason")
    except InputError:
        return
    assert value and value.isprintable() and "\x1b" not in value and value == value.strip()
