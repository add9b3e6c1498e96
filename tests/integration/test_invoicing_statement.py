"""The statement's reads (billing_pipeline/invoicing/statement.py) that the `billing explain`
tests do not reach: the trail from ledger entries to priced lines as a pure function, and the
refusals before there is anything to explain. The statement over dbt-built marts is tested
through the command in tests/integration/test_cli_json.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from billing_pipeline.core.errors import BillingError, InputError
from billing_pipeline.db import connect
from billing_pipeline.invoicing.statement import (
    PricedLine,
    account_name,
    month_statement,
    priced_usage_built,
    usage_trail,
)
from billing_pipeline.ledger.queries import UsageEntry
from tests.support.platform import create_accounts

D = Decimal
UTC = UTC
HOUR = datetime(2026, 11, 24, 10, tzinfo=UTC)
NOVEMBER = (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))


def entry(entry_id: int, amount: str, hour: datetime, kind: str) -> UsageEntry:
    return UsageEntry(
        entry_id, "usage_deduction", D(amount), hour + timedelta(hours=1), f"k{entry_id}", hour, kind, False
    )


def line(hour: datetime, kind: str, resource: str, amount: str, deployment: str | None = "dep-a") -> PricedLine:
    return PricedLine(
        hour,
        kind,
        deployment,
        None if deployment else "m-1",
        None if deployment else "std-4",
        resource,
        D("1"),
        "core_hour",
        D(amount),
        "usage",
        D(amount),
        D(amount),
        None,
        False,
        False,
    )


def test_each_usage_entry_trails_to_the_priced_lines_of_its_hour_and_kind():
    cpu = line(HOUR, "workload_consumption", "cpu", "0.04")
    memory = line(HOUR, "workload_consumption", "memory", "0.01")
    machine = line(HOUR, "machine_rental", "machine", "0.5", deployment=None)
    next_hour = line(HOUR + timedelta(hours=1), "workload_consumption", "cpu", "0.08")
    entries = [
        entry(1, "-0.05", HOUR, "workload_consumption"),
        entry(2, "-0.5", HOUR, "machine_rental"),
        entry(3, "-0.08", HOUR + timedelta(hours=1), "workload_consumption"),
        entry(4, "-0.3", HOUR + timedelta(hours=2), "workload_consumption"),
    ]

    trail = usage_trail(entries, [cpu, memory, machine, next_hour])

    assert [(t.entry_id, t.priced_total, t.priced_lines) for t in trail] == [
        (1, D("0.05"), [cpu, memory]),
        (2, D("0.5"), [machine]),
        (3, D("0.08"), [next_hour]),
        (4, D("0"), []),  # settled, but nothing priced for its hour: the trail says so
    ]
    # The entry's own fields come first, unchanged (the JSON keeps them in this order).
    assert trail[0][:8] == tuple(entries[0])


@pytest.fixture
def accounts_db(db_url):
    create_accounts(db_url, "acme", "initech")
    return db_url


def test_an_unknown_account_is_refused(accounts_db):
    # The closest id is the command line's to suggest (cli.inputs.account_suggestion), for every command.
    with connect(accounts_db) as conn:
        assert account_name(conn, "acme") == "Account acme"
        with pytest.raises(InputError, match=r"^unknown account 'acmee': not in billing.accounts.$"):
            account_name(conn, "acmee")
        with pytest.raises(InputError, match=r"^unknown account 'zzz': not in billing.accounts.$"):
            account_name(conn, "zzz")


def test_no_statement_before_the_pipeline_has_priced_anything(accounts_db):
    with connect(accounts_db) as conn:
        assert priced_usage_built(conn) is False
        with pytest.raises(BillingError, match="the priced-usage marts do not exist yet") as refused:
            month_statement(conn, "acme", *NOVEMBER)
        assert not isinstance(refused.value, InputError)  # exit code 1: the pipeline has to run, not the input
        with pytest.raises(InputError, match="unknown account 'nobody'"):  # the account is checked first
            month_statement(conn, "nobody", *NOVEMBER)
