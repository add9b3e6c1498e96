"""The analysts' month-end marts (fct_invoices, fct_invoice_lines, fct_sla_availability) built by dbt
from issued rows."""

from __future__ import annotations

from datetime import UTC, datetime, timezone
from decimal import Decimal

import psycopg

from billing_pipeline.invoicing.invoices import issue_invoices
from billing_pipeline.invoicing.months import parse_month
from billing_pipeline.invoicing.sla import credit_sla
from tests.support.dbt import query, run_dbt
from tests.support.month_end import (
    create_platform,
    create_priced_usage_mart,
    insert_month_usage,
    insert_probe_month,
    settle,
)

ACCOUNTS = {"acme": "dep-acme", "globex": "dep-globex"}


def test_marts_show_invoices_and_sla_availability(db_url, tmp_path, frozen_clock):
    month = parse_month("2026-10")
    with psycopg.connect(db_url) as conn:
        create_platform(conn, ACCOUNTS)
        create_priced_usage_mart(conn)
        insert_month_usage(conn, "2026-10", ACCOUNTS, renters=["acme"])
        insert_probe_month(conn, "dep-acme", "2026-10", down_minutes=580)
        # The ledger stamps (which fct_invoice_lines reads) from the test's clock, not the calendar.
        frozen_clock.set("2026-11-01T01:00:00Z")
        settle(conn, datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC))
        frozen_clock.set("2026-11-01T06:00:00Z")
        credit_sla(conn, month)
        issue_invoices(conn, month, close_id="test")

    run_dbt(
        db_url,
        [
            "build",
            "--exclude-resource-type",
            "unit_test",
            "--select",
            "+fct_invoices+",
            "+fct_invoice_lines+",
            "+fct_sla_availability+",
            # Only the tests whose every parent is built here: the grants' identity test also reads
            # the balances group, which this build leaves out (the hourly job builds it).
            "--indirect-selection",
            "cautious",
        ],
        tmp_path,
    )

    invoices = query(
        db_url,
        "SELECT invoice_number, account_id, opening_balance + sum_of_lines = closing_balance, "
        "sla_credit_amount, machine_rental_amount < 0, ledger_entry_count FROM analytics.fct_invoices "
        "ORDER BY invoice_sequence",
    )
    sla = query(
        db_url,
        "SELECT deployment_id, sla_outcome, sla_tier_id, credited_amount, unmeasured_minutes "
        "FROM analytics.fct_sla_availability ORDER BY deployment_id",
    )
    assert [(n, a, ok) for n, a, ok, *_ in invoices] == [
        ("SAT-00000001", "acme", True),
        ("SAT-00000002", "globex", True),
    ]
    assert invoices[0][3] == sla[0][3] > 0 and invoices[0][4] is True and invoices[0][5] == 31 * 24 * 2 + 1
    assert [s[:3] for s in sla] == [("dep-acme", "credit", "below_99"), ("dep-globex", "no_measurement", None)]
    assert sla[1][3] == Decimal("0") and sla[1][4] == 31 * 24 * 60
    # fct_invoice_lines is the issued lines as issued, line for line.
    issued = query(
        db_url,
        "SELECT i.invoice_number, l.line_no, l.line_type, l.usage_kind, l.period_month, l.prior_period, l.amount, "
        "cardinality(l.ledger_entry_ids) FROM billing.invoice_lines l JOIN billing.invoices i ON i.id = l.invoice_id "
        "ORDER BY 1, 2",
    )
    mart = query(
        db_url,
        "SELECT invoice_number, line_no, line_type, usage_kind, line_period_month, is_prior_period, amount, "
        "ledger_entry_count FROM analytics.fct_invoice_lines ORDER BY 1, 2",
    )
    assert mart == issued and len(mart) >= 4
