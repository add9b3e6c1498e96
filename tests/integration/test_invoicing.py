"""Month-end invoices (docs/rules/month-end.md) against real PostgreSQL and real Dagster runs.

A month of hourly priced usage is bulk-inserted in SQL (the mart's columns), settled into the
ledger by the real deduction, then closed through ``monthly_invoice_job`` (SLA credits, invoices).
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal

import dagster as dg
import psycopg
import pytest

from billing_pipeline.cli.main import main
from billing_pipeline.invoicing.invoices import issue_invoices
from billing_pipeline.invoicing.months import parse_month
from billing_pipeline.orchestration.month_end import run_month_end
from tests.support.month_end import (
    create_platform,
    create_priced_usage_mart,
    insert_month_usage,
    insert_probe_month,
    mark_metric_hours,
    settle,
    topup,
)
from tests.support.pdf_layout import layout_problems

OCT = datetime(2026, 10, 1, tzinfo=UTC)
NOV = datetime(2026, 11, 1, tzinfo=UTC)
DEC = datetime(2026, 12, 1, tzinfo=UTC)
ACCOUNTS = {"acme": "dep-acme", "globex": "dep-globex", "initech": "dep-initech"}
MICRO = Decimal("0.000001")


def cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


@pytest.fixture
def october(db_url, monkeypatch, tmp_path, frozen_clock):
    """October 2026 priced and settled for three accounts; acme's deployment at 98.7% availability.
    acme tops up 500 on 2026-10-01 (before the usage it pays for: an October line) and 500 on
    2026-11-01 03:00 (after October ended, before it is closed: a November line). Every entry is
    stamped by ``frozen_clock``, never by the calendar, and the clock is left at 2026-11-01 06:00.
    Runs go to a Dagster instance of the test's own (DAGSTER_HOME). Its last two hours stay
    incomplete, so October is closed with no wait (BILLING_MONTH_CLOSE_WAIT_HOURS=0): this file
    tests what a close issues; test_month_close_readiness.py tests when it may."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv("BILLING_MONTH_CLOSE_WAIT_HOURS", "0")
    (tmp_path / "dagster_home").mkdir()
    with psycopg.connect(db_url) as conn:
        create_platform(conn, ACCOUNTS)
        create_priced_usage_mart(conn)
        insert_month_usage(conn, "2026-10", ACCOUNTS, renters=["acme"])
        mark_metric_hours(
            conn, "2026-10", incomplete=[OCT + timedelta(days=30, hours=22), OCT + timedelta(days=30, hours=23)]
        )
        insert_probe_month(conn, "dep-acme", "2026-10", down_minutes=580)  # 98.70%
        insert_probe_month(conn, "dep-globex", "2026-10")
        frozen_clock.set(OCT)
        topup(conn, "acme", "500", "pay-acme-1")
        frozen_clock.set(NOV + timedelta(hours=1))  # October settled once it is over
        settle(conn, OCT, NOV)
        frozen_clock.set(NOV + timedelta(hours=3))
        topup(conn, "acme", "500", "pay-acme-2")
    frozen_clock.set(NOV + timedelta(hours=6))  # when October is closed
    return db_url


def entry_period(type_, reference, created_at):
    if type_ in ("usage_deduction", "reversal") and "usage_kind" in reference:
        return reference["hour"][:7]
    if type_ == "sla_credit":
        return reference["month"]
    return f"{created_at:%Y-%m}"


def ledger(conn):
    rows = conn.execute(
        "SELECT id, account_id, type, amount, reference, created_at FROM billing.credit_transactions"
    ).fetchall()
    return {
        r[0]: {
            "account": r[1],
            "type": r[2],
            "amount": r[3],
            "period": entry_period(r[2], r[4], r[5]),
            "reference": r[4],
        }
        for r in rows
    }


def invoice_rows(conn, month):
    return conn.execute(
        "SELECT i.*, (SELECT json_agg(l ORDER BY line_no) FROM billing.invoice_lines l WHERE l.invoice_id = i.id) "
        "FROM billing.invoices i WHERE period_month = %s ORDER BY number",
        (month,),
    ).fetchall()


def test_month_close_lines_equal_the_ledger_to_the_micro_credit_and_closing_again_does_nothing(
    october, capsys, tmp_path, frozen_clock
):
    code, out, _ = cli(capsys, "close-month", "2026-10", "--now", "2026-11-01T06:00:00Z", "--json")
    assert code == 0, out
    summary = json.loads(out)
    assert summary["invoices_issued"] == 3 and summary["sla_credits_posted"] == 1
    assert summary["runs"][0]["status"] == "SUCCESS" and summary["runs"][0]["launched_by"] == "in_process"

    with psycopg.connect(october) as conn:
        entries = ledger(conn)
        invoiced = dict(conn.execute("SELECT ledger_entry_id, invoice_id FROM billing.invoice_entries").fetchall())
        invoices = conn.execute(
            "SELECT id, account_id, number, opening_balance, total, closing_balance "
            "FROM billing.invoices ORDER BY number"
        ).fetchall()
        issued_at = {r[0] for r in conn.execute("SELECT issued_at FROM billing.invoices").fetchall()}
        lines = conn.execute(
            "SELECT invoice_id, line_type, usage_kind, amount, ledger_entry_ids FROM billing.invoice_lines"
        ).fetchall()
        owed = conn.execute(
            "SELECT account_id, usage_kind, hour, sum(amount) FROM analytics.fct_priced_usage GROUP BY 1, 2, 3"
        ).fetchall()

    assert issued_at == {NOV + timedelta(hours=6)}  # the product's clock (here the test's), not the calendar
    # Exactly the entries of period <= October are invoiced, each once; November's top-up is not.
    assert set(invoiced) == {i for i, e in entries.items() if e["period"] <= "2026-10"}
    not_invoiced = [(e["type"], e["period"]) for i, e in entries.items() if i not in invoiced]
    assert not_invoiced == [("topup", "2026-11")]
    assert [n for _, _, n, *_ in invoices] == [1, 2, 3]
    by_invoice = defaultdict(list)
    for invoice_id, line_type, usage_kind, amount, ids in lines:
        assert amount == sum(entries[i]["amount"] for i in ids)  # each line is its entries' exact sum
        by_invoice[invoice_id].append((line_type, usage_kind, amount))
    for invoice_id, account, _number, opening, total, closing in invoices:
        account_entries = [e["amount"] for i, e in entries.items() if invoiced.get(i) == invoice_id]
        assert opening == 0 and total == sum(a for *_, a in by_invoice[invoice_id]) == sum(account_entries)
        assert closing == opening + total
        # The usage lines are the priced usage, rounded half-even per hour and kind, to the micro-credit.
        for kind in ("workload_consumption", "machine_rental"):
            expected = -sum(
                (a.quantize(MICRO, rounding=ROUND_HALF_EVEN) for acc, k, _h, a in owed if acc == account and k == kind),
                Decimal(0),
            )
            got = [a for t, k, a in by_invoice[invoice_id] if t == "usage" and k == kind]
            assert got == ([expected] if expected else [])
    acme_types = sorted(t for t, _k, _a in by_invoice[invoices[0][0]])
    assert acme_types == ["sla_credit", "topup", "usage", "usage"]
    # The top-up posted on 2026-10-01 is October's line.
    assert [a for t, _k, a in by_invoice[invoices[0][0]] if t == "topup"] == [Decimal("500.000000")]

    code, out, _ = cli(
        capsys,
        "invoice",
        "acme",
        "--month",
        "2026-10",
        "--json",
        "--html",
        str(tmp_path / "inv.html"),
        "--pdf",
        str(tmp_path / "inv.pdf"),
    )
    assert code == 0
    doc = json.loads(out)
    assert doc["number"] == "SAT-00000001" and doc["status"] == "issued"
    assert Decimal(doc["closing_balance"]) == Decimal(doc["opening_balance"]) + sum(
        Decimal(l["amount"]) for l in doc["lines"]
    )
    assert all(set(l) >= {"description", "amount", "ledger_entry_ids", "period", "prior_period"} for l in doc["lines"])
    assert all(len(l["amount"].split(".")[1]) == 6 for l in doc["lines"])
    (sla,) = doc["sla"]
    assert sla["deployment_id"] == "dep-acme" and sla["measurement"]["tier"] == "below_99"
    assert sla["measurement"]["down_minutes"] == 580 and sla["measurement"]["availability"].startswith("0.987")
    assert doc["unbilled_hours"]["count"] == 2 and doc["chain_head"]["entry_hash"]
    html = (tmp_path / "inv.html").read_text()
    assert "<svg" in html and "<script" not in html and "SAT-00000001" in html and "Rented capacity" in html
    assert (tmp_path / "inv.pdf").read_bytes()[:5] == b"%PDF-"
    # The whole document (SLA credit, top-up, hours not billed): on one page, inside the margins.
    assert layout_problems(tmp_path / "inv.pdf") == (1, [])

    with psycopg.connect(october) as conn:
        before = invoice_rows(conn, OCT.date())
        sla_before = conn.execute(
            "SELECT count(*) FROM billing.credit_transactions WHERE type = 'sla_credit'"
        ).fetchone()
    frozen_clock.set("2026-11-02T00:00:00Z")
    again = run_month_end("2026-10", "2026-11-02T00:00:00Z")
    assert again["invoices_issued"] == 0 and again["sla_credits_posted"] == 0
    with psycopg.connect(october) as conn:
        assert invoice_rows(conn, OCT.date()) == before
        assert (
            conn.execute("SELECT count(*) FROM billing.credit_transactions WHERE type = 'sla_credit'").fetchone()
            == sla_before
        )


def test_late_usage_is_a_prior_period_line_next_month_and_issued_invoices_are_immutable(october, frozen_clock):
    run_month_end("2026-10", "2026-11-01T06:00:00Z")
    late_hour = OCT + timedelta(days=14, hours=10)
    with psycopg.connect(october) as conn:
        october_before = invoice_rows(conn, OCT.date())
        # Late data for an October hour (a correction raising acme's usage), and some November usage.
        conn.execute(
            "INSERT INTO analytics.fct_priced_usage (hour, account_id, usage_kind, resource, deployment_id, "
            "quantity, unit, unit_price, amount) VALUES (%s, 'acme', 'workload_consumption', 'gpu', "
            "'dep-acme', 1, 'gpu_hour', 1.5, 1.5)",
            (late_hour,),
        )
        insert_month_usage(conn, "2026-11", {"acme": "dep-acme"}, renters=[])
        frozen_clock.set(NOV + timedelta(days=14))  # the correction arrives mid-November
        settle(conn, late_hour, late_hour + timedelta(hours=1))
        frozen_clock.set(DEC + timedelta(hours=1))
        settle(conn, NOV, DEC)
        late_ids = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM billing.credit_transactions WHERE account_id = 'acme' AND (reference ->> 'hour')::timestamptz = %s "
                "ORDER BY id",
                (late_hour,),
            ).fetchall()
        ]
        assert len(late_ids) == 3  # workload and rental deductions of the hour, then the late one
        late_id = late_ids[-1]

    frozen_clock.set(DEC + timedelta(hours=6))
    summary = run_month_end("2026-11", "2026-12-01T06:00:00Z")
    assert summary["invoices_issued"] == 3 and summary["invoices"]["prior_period_lines"] == 1

    with psycopg.connect(october) as conn:
        assert invoice_rows(conn, OCT.date()) == october_before
        (oct_closing,) = conn.execute(
            "SELECT closing_balance FROM billing.invoices WHERE account_id = 'acme' AND period_month = '2026-10-01'"
        ).fetchone()
        nov = conn.execute(
            "SELECT id, number, opening_balance, total, closing_balance FROM billing.invoices "
            "WHERE account_id = 'acme' AND period_month = '2026-11-01'"
        ).fetchone()
        prior = conn.execute(
            "SELECT period_month, amount, ledger_entry_ids, description FROM billing.invoice_lines "
            "WHERE invoice_id = %s AND prior_period",
            (nov[0],),
        ).fetchall()
        topups = conn.execute(
            "SELECT amount FROM billing.invoice_lines WHERE invoice_id = %s AND line_type = 'topup'", (nov[0],)
        ).fetchall()
    assert nov[1] == 4 and nov[2] == oct_closing and nov[4] == nov[2] + nov[3]
    assert prior == [(OCT.date(), Decimal("-1.500000"), [late_id], prior[0][3])]
    assert "usage of 2026-10" in prior[0][3]
    assert topups == [(Decimal("500.000000"),)]  # the top-up posted on 2026-11-01, not October's

    with psycopg.connect(october, autocommit=True) as conn:
        for statement in (
            "UPDATE billing.invoices SET closing_balance = 0",
            "DELETE FROM billing.invoices WHERE number = 1",
            "UPDATE billing.invoice_lines SET amount = 0",
            "DELETE FROM billing.invoice_lines",
            "DELETE FROM billing.invoice_entries",
            "TRUNCATE billing.invoices CASCADE",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(statement)
        assert invoice_rows(conn, OCT.date()) == october_before


def test_numbers_are_gapless_across_accounts_and_months_with_concurrent_closes(db_url):
    accounts = {f"acct-{i:02d}": f"dep-{i:02d}" for i in range(12)}
    with psycopg.connect(db_url) as conn:
        create_platform(conn, accounts)
        create_priced_usage_mart(conn)
        conn.execute(
            "INSERT INTO analytics.fct_priced_usage (hour, account_id, usage_kind, resource, deployment_id, quantity, "
            "unit, unit_price, amount) SELECT h, a, 'workload_consumption', 'cpu', 'dep', 1, 'core_hour', 0.5, 0.5 "
            "FROM unnest(%s::text[]) a, (VALUES (%s::timestamptz), (%s::timestamptz)) v (h)",
            (list(accounts), OCT + timedelta(hours=5), NOV + timedelta(hours=5)),
        )
        settle(conn, OCT, DEC)

    def close_concurrently(month, times=3):
        barrier = threading.Barrier(times)
        results, errors = [], []

        def close(n):
            try:
                with psycopg.connect(db_url) as conn:
                    barrier.wait()
                    results.append(issue_invoices(conn, parse_month(month), close_id=f"{month}-{n}"))
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=close, args=(n,)) for n in range(times)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        return sorted(r.invoices_issued for r in results)

    assert close_concurrently("2026-10") == [0, 0, 12]
    assert close_concurrently("2026-11") == [0, 0, 12]
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT number, account_id, period_month, issued_at FROM billing.invoices ORDER BY number"
        ).fetchall()
        counter = conn.execute("SELECT last_number FROM billing.invoice_number_counter").fetchone()[0]
    assert [r[0] for r in rows] == list(range(1, 25)) and counter == 24
    assert [r[3] for r in rows] == sorted(r[3] for r in rows)  # assigned in issue order
    assert len({(r[1], r[2]) for r in rows}) == 24


def test_close_month_refuses_a_month_that_has_not_ended(db_url, capsys):
    code, _, err = cli(capsys, "close-month", "2026-11", "--now", "2026-11-30T23:59:59Z")
    assert code == 2 and "has not ended" in err and "2026-12-01" in err
    code, _, err = cli(capsys, "close-month", "2026-13")
    assert code == 2 and "YYYY-MM" in err
    code, _, err = cli(capsys, "invoice", "nobody", "--month", "2026-10")
    assert code == 2 and "unknown account" in err
