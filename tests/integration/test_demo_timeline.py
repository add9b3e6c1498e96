"""The demo's money has one timeline (issue 21, point 8): its opening credit is paid before the
usage it pays for, so globex's November reads the same in its statement, its invoice and `billing
status`, whatever the date the demo runs on (before, the top-ups carried the wall clock and the
usage 2026-11-24: 0, -14.17 and +135.83 in three places)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import psycopg

from billing_pipeline.core.hours import Hour
from billing_pipeline.invoicing.invoices import issue_invoices
from billing_pipeline.invoicing.statement import month_account
from billing_pipeline.ledger import Entry, EntryType, balance_of, post_entries
from billing_pipeline.ledger.keys import usage_key
from devkit.demo import platform
from devkit.demo.run import post_opening_credit

NOV = date(2026, 11, 1)


def test_the_opening_credit_comes_before_the_usage_and_every_document_agrees(db_url, capsys):
    with psycopg.connect(db_url) as conn:
        platform.load_platform(conn)
        post_opening_credit(conn)
        post_opening_credit(conn)  # the demo run again: nothing new
        hour = Hour(platform.DEMO_START).text
        usage = Entry(
            "globex",
            EntryType.USAGE_DEDUCTION,
            Decimal("-14.166667"),
            usage_key("globex", hour, "machine_rental"),
            {"hour": hour, "usage_kind": "machine_rental", "account_id": "globex"},
        )
        post_entries(conn, [usage])
        stamped = conn.execute(
            "SELECT created_at FROM billing.credit_transactions WHERE account_id = 'globex' AND type = 'topup'"
        ).fetchall()
        assert stamped == [(datetime(2026, 11, 24, 9, tzinfo=UTC),)]  # an hour before the first usage hour

        statement = month_account(conn, "globex", NOV)
        assert (statement.status, statement.opening) == ("open", Decimal("0"))
        assert [(line.line_type, line.amount) for line in statement.lines] == [
            ("usage", Decimal("-14.166667")),
            ("topup", Decimal("150.000000")),
        ]
        assert statement.closing == Decimal("135.833333") == balance_of(conn, "globex")

        issue_invoices(conn, NOV, close_id="demo-close")
        conn.commit()
        invoice = month_account(conn, "globex", NOV)
        assert (invoice.status, invoice.opening, invoice.closing) == ("invoiced", Decimal("0"), statement.closing)
    assert "already posted" in capsys.readouterr().out
