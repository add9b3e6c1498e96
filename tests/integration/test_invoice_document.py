"""The invoice a customer reads (docs/rules/month-end.md, "The document"), rendered to PDF by
WeasyPrint and read back with pdfplumber: every text box inside the page margins, no two
overlapping, a one-line invoice on one page, a long one paginated; the draft of an open month;
why an account has no invoice. Real PostgreSQL; months settled by the real deduction and issued by
the real ``issue_invoices``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pdfplumber
import psycopg
import pytest

from billing_pipeline.cli.main import main
from billing_pipeline.invoicing.invoices import issue_invoices, preview_invoice
from tests.integration.test_cli_json import validate
from tests.support.month_end import (
    create_platform,
    create_priced_usage_mart,
    insert_month_usage,
    mark_metric_hours,
    settle,
    topup,
)
from tests.support.pdf_layout import layout_problems

OCT = datetime(2026, 10, 1, tzinfo=UTC)
NOV = datetime(2026, 11, 1, tzinfo=UTC)
SELLER = {
    "BILLING_SELLER_NAME": "Satusky Cloud Ltd",
    "BILLING_SELLER_ADDRESS": "1 Example Street; 10115 Berlin; Germany",
    "BILLING_SELLER_EMAIL": "billing@satusky.example",
    "BILLING_CREDIT_VALUE": "1 credit = 0.01 USD",
}


def cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def pdf_text(path) -> str:
    with pdfplumber.open(path) as pdf:
        return "\n".join(page.extract_text() for page in pdf.pages)


@pytest.fixture
def october_closed(db_url, frozen_clock):
    """October 2026 settled and closed for "solo" (workload consumption only: one usage line) and
    "busy" (a rented machine, consumption and 60 top-ups: a long invoice). "late" was created in
    November and has no entries. The clock is left at 2026-11-20 10:30."""
    with psycopg.connect(db_url) as conn:
        create_platform(conn, {"solo": "dep-solo", "busy": "dep-busy"})
        create_platform(conn, {"late": "dep-late"}, created_at=datetime(2026, 11, 5, tzinfo=UTC))
        conn.execute("UPDATE billing.accounts SET name = 'Solo Robotics Ltd' WHERE id = 'solo'")
        create_priced_usage_mart(conn)
        insert_month_usage(conn, "2026-10", {"solo": "dep-solo", "busy": "dep-busy"}, renters=["busy"])
        insert_month_usage(conn, "2026-11", {"solo": "dep-solo", "busy": "dep-busy"}, renters=["busy"])
        mark_metric_hours(conn, "2026-10")
        conn.commit()
        for n in range(60):
            frozen_clock.set(OCT + timedelta(hours=11 * n))
            topup(conn, "busy", f"{10 + n}.25", f"pay-busy-{n}")
        frozen_clock.set(NOV + timedelta(hours=1))
        settle(conn, OCT, NOV)
        frozen_clock.set(NOV + timedelta(hours=6))
        result = issue_invoices(conn, OCT.date(), "close-2026-10")
        conn.commit()
    assert result.invoices_issued == 2  # solo and busy; late did not exist before November
    frozen_clock.set(datetime(2026, 11, 20, 10, 30, tzinfo=UTC))
    with psycopg.connect(db_url) as conn:
        settle(conn, NOV, datetime(2026, 11, 20, 10, tzinfo=UTC))  # November so far
        conn.commit()
    return db_url


def test_a_one_line_invoice_is_one_page_inside_the_margins_in_words_a_customer_reads(
    october_closed, capsys, tmp_path, monkeypatch
):
    for name, value in SELLER.items():
        monkeypatch.setenv(name, value)
    pdf = tmp_path / "solo.pdf"
    code, out, _ = cli(capsys, "invoice", "solo", "--month", "2026-10", "--json", "--pdf", str(pdf))
    assert code == 0
    doc = json.loads(out)
    validate("invoice", doc)
    assert [line["type"] for line in doc["lines"]] == ["usage"] and doc["status"] == "issued"
    pages, problems = layout_problems(pdf)
    assert problems == [] and pages == 1
    text = pdf_text(pdf)
    # Seller and bill-to blocks, the period as people write it, the credit's worth.
    for expected in (
        "Satusky Cloud Ltd",
        "10115 Berlin",
        "billing@satusky.example",
        "BILL TO",
        "Solo Robotics Ltd",
        "solo@example.test",
        "Oct 1 – Oct 31, 2026 (UTC)",
        "1 credit = 0.01 USD",
        doc["number"],
        "Page 1 of 1",
    ):
        assert expected in text, expected
    # Human units, quantities with four places, the line's amount with six, charges positive.
    assert "core_hour" not in text and "gib_hour" not in text
    usage = -Decimal(doc["lines"][0]["amount"])
    assert f"Workload consumption · line 1, 744 ledger entries {usage:,.6f}" in text
    assert "core-hours" in text and "1,116.0000 GiB-hours" in text
    # Nothing was paid in: the closing balance is owed, said in words, with its currency worth.
    closing = Decimal(doc["closing_balance"])
    assert closing == -usage and Decimal(doc["opening_balance"]) == 0
    assert "BALANCE DUE" in text and f"{usage:,.6f} owed" in text
    worth = (usage * Decimal("0.01")).quantize(Decimal("0.01"))
    assert f"({worth:,.2f} USD)" in text
    assert "Appendix · ledger chain head at issue" in text and doc["chain_head"]["entry_hash"][:20] in text


def test_a_long_invoice_paginates_inside_the_margins_without_overlaps(october_closed, capsys, tmp_path):
    pdf, html = tmp_path / "busy.pdf", tmp_path / "busy.html"
    code, out, _ = cli(
        capsys, "invoice", "busy", "--month", "2026-10", "--json", "--pdf", str(pdf), "--html", str(html)
    )
    assert code == 0
    doc = json.loads(out)
    assert len(doc["lines"]) == 62  # two usage lines and 60 top-ups
    pages, problems = layout_problems(pdf)
    assert problems == [] and pages == 3  # the lines run over page 2; the appendix is alone on page 3
    text = pdf_text(pdf)
    assert "Page 3 of 3" in text
    with pdfplumber.open(pdf) as opened:
        assert "DESCRIPTION QUANTITY UNIT PRICE AMOUNT" in opened.pages[1].extract_text()  # the header repeats
    # Credits to the account carry a minus sign; the default credit value is said.
    assert "Top-up · line 3, 1 ledger entry −10.250000" in text
    assert "credits, not currency" in text
    assert "PAID FROM PREPAID CREDITS" in text and "Nothing is due." in text
    page = html.read_text()
    assert page.count("<h1>") == 1 and "<script" not in page and 'class="chart"' in page


def test_the_draft_of_the_open_month_is_marked_and_nothing_is_issued(october_closed, capsys, tmp_path):
    with psycopg.connect(october_closed) as conn:
        before = conn.execute(
            "SELECT (SELECT count(*) FROM billing.invoices), (SELECT last_number FROM billing.invoice_number_counter)"
        ).fetchone()
        preview = preview_invoice(conn, "solo", NOV.date())
    assert preview.lines  # November's usage so far
    pdf = tmp_path / "draft.pdf"
    code, out, _ = cli(capsys, "invoice", "solo", "--month", "CURRENT", "--json", "--pdf", str(pdf))
    assert code == 0
    doc = json.loads(out)
    validate("invoice", doc)
    assert doc["status"] == "draft" and doc["number"] is None and doc["issued_at"] is None
    assert doc["month"] == "2026-11" and doc["as_of"] == "2026-11-20T10:30:00+00:00"
    assert [(line["line_no"], Decimal(line["amount"]), line["ledger_entry_ids"]) for line in doc["lines"]] == [
        (n, amount, list(ids)) for n, _t, _k, _p, _pp, _d, amount, ids in preview.lines
    ]
    assert (
        Decimal(doc["closing_balance"])
        == preview.closing_balance
        == Decimal(doc["opening_balance"]) + sum(Decimal(line["amount"]) for line in doc["lines"])
    )
    # Hours of November not billed yet: only those that began before the draft's clock.
    assert doc["unbilled_hours"]["count"] == 19 * 24 + 11
    pages, problems = layout_problems(pdf)
    assert problems == [] and pages == 1
    text = pdf_text(pdf)
    assert "DRAFT INVOICE" in text and "DRAFT — not issued, no number, nothing is due." in text
    assert "Nov 1 – Nov 30, 2026" in text and "none until issued" in text
    # The same month by its name, in words.
    code, out, _ = cli(capsys, "invoice", "solo", "--month", "2026-11")
    assert code == 0 and out.startswith("DRAFT invoice of solo for 2026-11 (not issued, no number)")
    assert "2026-11 is still open" in out
    with psycopg.connect(october_closed) as conn:
        after = conn.execute(
            "SELECT (SELECT count(*) FROM billing.invoices), (SELECT last_number FROM billing.invoice_number_counter)"
        ).fetchone()
    assert after == before == (2, 2)


def test_an_account_without_an_invoice_is_told_why(october_closed, capsys, frozen_clock):
    code, _, err = cli(capsys, "invoice", "late", "--month", "2026-10")
    assert code == 2
    assert "no invoice for late in 2026-10: it had no entries in or before that month" in err
    assert "created on 2026-11-05, after the month ended" in err and "not closed" not in err
    code, _, err = cli(capsys, "invoice", "solo", "--month", "2026-12")
    assert code == 2 and "no invoice for solo in 2026-12: the month has not begun" in err
    code, _, err = cli(capsys, "invoice", "sollo", "--month", "2026-10")
    assert code == 2 and "unknown account 'sollo'" in err and "Did you mean 'solo'?" in err
    # An account added after October was closed, though it existed before October ended: the close
    # would give it an invoice now, so it is a draft that says so.
    with psycopg.connect(october_closed) as conn:
        create_platform(conn, {"newbie": "dep-newbie"}, created_at=datetime(2026, 10, 20, tzinfo=UTC))
    code, out, _ = cli(capsys, "invoice", "newbie", "--month", "2026-10", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["status"] == "draft" and doc["lines"] == []
    assert doc["draft_note"].startswith("2026-10 was closed on ")
    assert (
        "before newbie had anything to invoice for it; closing it again (`billing close-month 2026-10`)"
        in (doc["draft_note"])
    )
    # An ended month not closed yet is a draft that says so, not an error.
    frozen_clock.set(datetime(2026, 12, 1, 3, tzinfo=UTC))
    code, out, _ = cli(capsys, "invoice", "solo", "--month", "2026-11", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["status"] == "draft"
    assert doc["draft_note"].startswith("2026-11 has ended but is not closed yet")
    # November closed for every account: October of "late" stays "no entries", not "closed first";
    # "newbie", never invoiced for October, is sent to November's invoice.
    with psycopg.connect(october_closed) as conn:
        assert issue_invoices(conn, NOV.date(), "close-2026-11").invoices_issued == 4
    code, _, err = cli(capsys, "invoice", "late", "--month", "2026-10")
    assert code == 2 and "no invoice for late in 2026-10: it had no entries in or before that month" in err
    code, _, err = cli(capsys, "invoice", "newbie", "--month", "2026-10")
    assert code == 2
    assert "no invoice for newbie in 2026-10: 2026-11 was closed first, so the entries of 2026-10 are on " in err
    assert "(for 2026-11), as prior-period lines. Show it with `billing invoice newbie --month 2026-11`" in err


def test_a_credit_value_that_is_not_one_is_a_configuration_error(october_closed, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("BILLING_CREDIT_VALUE", "a lot")
    code, _, err = cli(capsys, "invoice", "solo", "--month", "2026-10", "--html", str(tmp_path / "x.html"))
    assert code == 3 and "BILLING_CREDIT_VALUE 'a lot' is not the value of one credit" in err
    assert not (tmp_path / "x.html").exists()
