"""Credit grants, read (docs/rules/credit-reports.md): `billing grant` / `billing grants`, the month's paid and free
credits in `billing explain` and the invoice (JSON, HTML, PDF), and the marts fct_grant_balances and
fct_credit_revenue, against real PostgreSQL, the real posting (its burn-down hook) and a real dbt build.

The scenario (account acme, October and November 2026), worked out by hand:

=====  ===============================  =====  ====  ========  ===========
grant  entry                            kind   prio  granted   expires
=====  ===============================  =====  ====  ========  ===========
G1     topup 10-01 00:10                paid   50    100       never
G2     promotional 10-01 00:20          free   10    40        10-15 00:00
G3     promotional 10-02 00:00          free   10    20        11-30 00:00
G4     topup 10-03 00:00 (prio 60)      paid   60    10        10-25 00:00
G6     promotional 10-04 00:00 (p 90)   free   90    5         12-31 00:00
G5     topup 11-03 00:00                paid   50    20        never
=====  ===============================  =====  ====  ========  ===========

* U1 usage of 10-05 10:00, 25: G2 25 (priority 10, expires first).
* expiry of G2 (10-15 01:00): its 15 left expire.
* U2 usage of 10-16 10:00, 12: G2 is no longer valid at that hour; G3 12.
* U3 usage of 10-20 10:00, 50.123457: G3 8, then G1 42.123457 (priority 50 before G4's 60).
* expiry of G4 (10-25 01:00): 10 paid credits expire unused (breakage).
* October: granted paid 110, free 65; drawn paid 42.123457, free 45; expired paid 10, free 15;
  left at its end G6 5 (expires 12-31) and G1 57.876543 (never): 62.876543 = the balance.
* U4 usage of 11-02 10:00, 70: G1 57.876543, G6 5, 7.123457 of debt; G5 (11-03) pays the debt
  first: 12.876543 left.
* November: granted paid 20; drawn paid 57.876543 + 7.123457 = 65, free 5; left G5 12.876543.
* Revenue: October 42.123457 + 10 + 57.876543 = 110 paid granted; November (42.123457 + 65) + 10
  + 12.876543 = 130.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from jsonschema import Draft202012Validator, FormatChecker

from billing_pipeline.cli.main import main
from billing_pipeline.core.hours import Hour
from billing_pipeline.invoicing.document import load_invoice, render_html
from billing_pipeline.invoicing.invoices import issue_invoices
from billing_pipeline.ledger import Entry, post_entry
from billing_pipeline.ledger.grant_queries import RemainingByExpiry, grant_summary
from billing_pipeline.ledger.keys import usage_key
from tests.support import dbt as d
from tests.support.platform import create_accounts

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"
OCT, NOV = date(2026, 10, 1), date(2026, 11, 1)
DEC, JAN, FEB = date(2026, 12, 1), date(2027, 1, 1), date(2027, 2, 1)
D = Decimal


def validate(name: str, document) -> None:
    schema = json.loads((SCHEMAS / f"{name}.json").read_text())
    errors = sorted(Draft202012Validator(schema, format_checker=FormatChecker()).iter_errors(document), key=str)
    assert not errors, f"{name}: " + "; ".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors[:5])


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's usage errors leave this way, with their code
        code = exc.code
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


class Scenario:
    """Posts the module's scenario through the real ledger, at the clock of each entry."""

    def __init__(self, conn: psycopg.Connection, clock) -> None:
        self.conn, self.clock, self.ids = conn, clock, {}

    def post(self, name: str, when: str, entry: Entry) -> int:
        self.clock.set(t(when))
        result = post_entry(self.conn, entry)
        assert result.created
        self.ids[name] = result.entry_id
        return result.entry_id

    def topup(self, name: str, when: str, amount: str, grant: dict | None = None) -> int:
        reference = {"payment_reference": name, "paid": {"amount": amount, "currency": "usd"}}
        if grant:
            reference["grant"] = grant
        return self.post(name, when, Entry("acme", "topup", D(amount), f"topup:{name}", reference, actor="cli"))

    def promo(self, name: str, when: str, amount: str, expires: str, priority: int | None = None) -> int:
        grant = {"expires_at": expires, **({"priority": priority} if priority is not None else {})}
        entry = Entry(
            "acme",
            "promotional_grant",
            D(amount),
            f"promotional_grant:{name}",
            {"grant_reference": name, "grant": grant},
            reason=f"campaign {name}",
            actor="ops",
        )
        return self.post(name, when, entry)

    def usage(self, name: str, hour: str, when: str, amount: str) -> int:
        hour_text = Hour.of(t(hour)).text
        reference = {"hour": hour_text, "usage_kind": "workload_consumption", "account_id": "acme", "owed": amount}
        key = usage_key("acme", hour_text, "workload_consumption")
        return self.post(name, when, Entry("acme", "usage_deduction", -D(amount), key, reference))

    def expire(self, name: str, when: str, grant: str, amount: str, expires_at: str) -> int:
        reference = {"grant_entry_id": self.ids[grant], "expires_at": expires_at}
        entry = Entry("acme", "grant_expiry", -D(amount), f"grant_expiry:{self.ids[grant]}", reference)
        return self.post(name, when, entry)

    def october(self) -> None:
        self.topup("G1", "2026-10-01T00:10", "100")
        self.promo("G2", "2026-10-01T00:20", "40", "2026-10-15T00:00:00+00:00")
        self.promo("G3", "2026-10-02T00:00", "20", "2026-11-30T00:00:00+00:00")
        self.topup("G4", "2026-10-03T00:00", "10", {"priority": 60, "expires_at": "2026-10-25T00:00:00+00:00"})
        self.promo("G6", "2026-10-04T00:00", "5", "2026-12-31T00:00:00+00:00", priority=90)
        self.usage("U1", "2026-10-05T10:00", "2026-10-05T11:05", "25")
        self.expire("E2", "2026-10-15T01:00", "G2", "15", "2026-10-15T00:00:00+00:00")
        self.usage("U2", "2026-10-16T10:00", "2026-10-16T11:05", "12")
        self.usage("U3", "2026-10-20T10:00", "2026-10-20T11:05", "50.123457")
        self.expire("E4", "2026-10-25T01:00", "G4", "10", "2026-10-25T00:00:00+00:00")

    def november(self) -> None:
        self.usage("U4", "2026-11-02T10:00", "2026-11-02T11:05", "70")
        self.topup("G5", "2026-11-03T00:00", "20")


@pytest.fixture
def acme(db_url):
    create_accounts(db_url, "acme", "initech")
    with psycopg.connect(db_url, autocommit=True) as conn:
        yield conn


def draws(conn, ids: dict) -> set[tuple]:
    names = {v: k for k, v in ids.items()}
    rows = conn.execute("SELECT entry_id, grant_entry_id, amount FROM billing.grant_draws").fetchall()
    return {(names[e], names[g], a) for e, g, a in rows}


OCTOBER = dict(
    granted_paid=D(110),
    granted_free=D(65),
    drawn_paid=D("42.123457"),
    drawn_free=D(45),
    expired_paid=D(10),
    expired_free=D(15),
    remaining_paid=D("57.876543"),
    remaining_free=D(5),
)
NOVEMBER = dict(
    granted_paid=D(20),
    granted_free=D(0),
    drawn_paid=D(65),
    drawn_free=D(5),
    expired_paid=D(0),
    expired_free=D(0),
    remaining_paid=D("12.876543"),
    remaining_free=D(0),
)


def figures(summary) -> dict:
    return {k: getattr(summary, k) for k in OCTOBER}


def test_the_month_summary_follows_the_draws_the_posting_recorded(acme, frozen_clock):
    s = Scenario(acme, frozen_clock)
    s.october()
    # The burn-down as worked out by hand (module docstring): the reader below reads these rows.
    assert draws(acme, s.ids) == {
        ("U1", "G2", D(25)),
        ("E2", "G2", D(15)),
        ("U2", "G3", D(12)),
        ("U3", "G3", D(8)),
        ("U3", "G1", D("42.123457")),
        ("E4", "G4", D(10)),
    }
    october = grant_summary(acme, "acme", OCT)
    assert figures(october) == OCTOBER
    assert october.remaining == [
        RemainingByExpiry(t("2026-12-31T00:00"), D(0), D(5), D(5)),
        RemainingByExpiry(None, D("57.876543"), D(0), D("57.876543")),
    ]
    s.november()
    assert draws(acme, s.ids) >= {("U4", "G1", D("57.876543")), ("U4", "G6", D(5)), ("U4", "G5", D("7.123457"))}
    # October as it stands now is unchanged by November (no draw of November dates before it) ...
    assert figures(grant_summary(acme, "acme", OCT)) == OCTOBER
    november = grant_summary(acme, "acme", NOV)
    assert figures(november) == NOVEMBER
    assert november.remaining == [RemainingByExpiry(None, D("12.876543"), D(0), D("12.876543"))]
    # ... and the balance is what is left in the grants (no debt left: G5 paid it).
    balance = acme.execute("SELECT balance FROM billing.credits WHERE account_id = 'acme'").fetchone()[0]
    assert balance == november.remaining_paid + november.remaining_free == D("12.876543")
    # Another account's month is empty, not an error.
    assert figures(grant_summary(acme, "initech", OCT)) == dict.fromkeys(OCTOBER, D(0))


def test_a_debt_of_one_month_paid_by_the_next_months_grant_is_drawn_in_the_later_month(acme, frozen_clock):
    s = Scenario(acme, frozen_clock)
    s.usage("U1", "2026-10-31T23:00", "2026-10-31T23:50", "3.5")  # nothing granted yet: all debt
    s.topup("G1", "2026-11-01T00:30", "10")  # pays October's debt first
    assert draws(acme, s.ids) == {("U1", "G1", D("3.5"))}
    october, november = grant_summary(acme, "acme", OCT), grant_summary(acme, "acme", NOV)
    assert figures(october) == dict.fromkeys(OCTOBER, D(0))
    assert (november.granted_paid, november.drawn_paid, november.remaining_paid) == (D(10), D("3.5"), D("6.5"))


def test_the_invoice_shows_paid_and_free_credits_as_issued_in_json_html_and_pdf(acme, frozen_clock, tmp_path, capsys):
    s = Scenario(acme, frozen_clock)
    s.october()
    frozen_clock.set(t("2026-11-01T01:00"))
    assert issue_invoices(acme, OCT, "close-oct").invoices_issued == 1  # initech was created after October
    # After the issue: usage of an October hour settled late (a prior-period line of November's
    # invoice) draws 3 from G1 in October, and November happens; the October invoice must not move.
    s.usage("U5", "2026-10-31T22:00", "2026-11-01T02:00", "3")
    s.november()
    assert grant_summary(acme, "acme", OCT).drawn_paid == D("45.123457")  # October as it stands now

    code, out, _ = run(
        capsys, "invoice", "acme", "--month", "2026-10", "--json", "--html", str(tmp_path / "i.html"), "--pdf",
        str(tmp_path / "i.pdf"),
    )  # fmt: skip
    assert code == 0
    document = json.loads(out)
    validate("invoice", document)
    assert document["credits"] == {
        "paid_drawn": "42.123457",
        "free_drawn": "45.000000",
        "expired": "25.000000",
        "expired_paid": "10.000000",
        "expired_free": "15.000000",
        "granted_paid": "110.000000",
        "granted_free": "65.000000",
        "remaining_paid": "57.876543",
        "remaining_free": "5.000000",
        "remaining_total": "62.876543",
        "remaining_by_expiry": [
            {"expires_at": "2026-12-31T00:00:00+00:00", "paid": "0.000000", "free": "5.000000", "total": "5.000000"},
            {"expires_at": None, "paid": "57.876543", "free": "0.000000", "total": "57.876543"},
        ],
        "as_of_entry_id": s.ids["E4"],
    }
    # The lines of the new types, with the ledger's amounts; closing = what is left in the grants.
    lines = {(line["type"], line["amount"], line["period"]) for line in document["lines"]}
    assert {
        ("promotional_grant", "40.000000", "2026-10"),
        ("promotional_grant", "20.000000", "2026-10"),
        ("promotional_grant", "5.000000", "2026-10"),
        ("grant_expiry", "-15.000000", "2026-10"),
        ("grant_expiry", "-10.000000", "2026-10"),
        ("usage", "-87.123457", "2026-10"),
    } <= lines
    assert document["closing_balance"] == "62.876543" == document["credits"]["remaining_total"]
    # What the grants lost in October is exactly what the invoice's debits took from the ledger.
    debits = sum(D(line["amount"]) for line in document["lines"] if line["type"] in ("usage", "grant_expiry"))
    credits = document["credits"]
    assert D(credits["paid_drawn"]) + D(credits["free_drawn"]) + D(credits["expired"]) == -debits == D("112.123457")
    expiry = next(line for line in document["lines"] if line["ledger_entry_ids"] == [s.ids["E2"]])
    assert expiry["description"] == (
        f"Credits expired, unused: grant of entry {s.ids['G2']} (expired 2026-10-15 00:00 UTC)"
    )
    promo = next(line for line in document["lines"] if line["ledger_entry_ids"] == [s.ids["G2"]])
    assert promo["description"] == "Promotional credits: campaign G2, expiring 2026-10-15 00:00 UTC"

    html = (tmp_path / "i.html").read_text()
    start = html.index("<h2>Credits: paid and free</h2>")
    block = html[start : html.index("<h2>", start + 1)]
    for shown in ("110.000000", "65.000000", "42.123457", "45.000000", "57.876543", "2026-12-31 00:00 UTC", "never"):
        assert shown in block, shown
    assert (tmp_path / "i.pdf").read_bytes()[:5] == b"%PDF-"
    # The PDF's pages as WeasyPrint lays them out carry the same block.
    assert "Credits: paid and free" in _pdf_text(render_html(load_invoice(acme, "acme", OCT)))


def _pdf_text(html: str) -> str:
    from weasyprint import HTML

    words: list[str] = []

    def walk(box) -> None:
        text = getattr(box, "text", None)
        if isinstance(text, str):
            words.append(text)
        for child in getattr(box, "children", []) or []:
            walk(child)

    for page in HTML(string=html).render().pages:
        walk(page._page_box)
    return " ".join(words)


def test_grant_posts_once_with_its_terms_and_grants_lists_them_in_burn_order(acme, frozen_clock, capsys):
    frozen_clock.set(t("2026-10-01T00:00"))
    argv = ["grant", "acme", "30", "--reference", "welcome-1", "--reason", "welcome", "--actor", "ops"]
    code, out, err = run(capsys, *argv, "--expires", "2026-10-15T00:00Z", "--priority", "5", "--json")
    assert (code, err) == (0, "")
    posted = json.loads(out)
    validate("grant", posted)
    assert posted["created"] is True and posted["type"] == "promotional_grant" and posted["amount"] == "30.000000"
    assert posted["idempotency_key"] == "promotional_grant:welcome-1"
    assert posted["grant"] == {"kind": "free", "priority": 5, "expires_at": "2026-10-15T00:00:00+00:00"}
    code, out, _ = run(capsys, *argv, "--expires", "2026-10-15T00:00Z", "--priority", "5")
    assert code == 0 and out.startswith(
        f"Already posted: key 'promotional_grant:welcome-1' is entry {posted['entry_id']}"
    )
    code, out, _ = run(capsys, "grant", "acme", "7", "--reference", "w2", "--reason", "promo", "--actor", "ops")
    assert code == 0 and "priority 10, no expiry" in out  # the defaults
    run(capsys, "topup", "acme", "50", "--reference", "pay-1")
    frozen_clock.set(t("2026-10-02T00:00"))
    hour_text = Hour.of(t("2026-10-01T10:00")).text
    post_entry(
        acme,
        Entry(
            "acme",
            "usage_deduction",
            D(-31),
            usage_key("acme", hour_text, "workload_consumption"),
            {"hour": hour_text, "usage_kind": "workload_consumption", "account_id": "acme", "owed": "31"},
        ),
    )

    code, out, err = run(capsys, "grants", "acme", "--json")
    assert (code, err) == (0, "")
    listed = json.loads(out)
    validate("grants", listed)
    assert [(g["source_type"], g["priority"], g["granted"], g["drawn"], g["remaining"]) for g in listed["grants"]] == [
        ("promotional_grant", 10, "7.000000", "1.000000", "6.000000"),
        ("topup", 50, "50.000000", "0.000000", "50.000000"),
    ]  # the 5-priority grant was drawn to zero first: open grants only
    assert (listed["balance"], listed["open_remaining"], listed["debt"]) == ("56.000000", "56.000000", "0.000000")
    code, out, _ = run(capsys, "grants", "acme", "--all", "--json")
    everything = json.loads(out)["grants"]
    assert [(g["priority"], g["kind"], g["status"], g["expires_at"]) for g in everything] == [
        (5, "free", "used", "2026-10-15T00:00:00+00:00"),
        (10, "free", "open", None),
        (50, "paid", "open", None),
    ]
    code, out, _ = run(capsys, "grants", "acme", "--all")
    assert code == 0 and "promotional_grant" in out and "never" in out and "2026-10-15 00:00" in out


@pytest.mark.parametrize(
    ("argv", "code", "error_code", "says"),
    [
        (["grant", "acme", "5000", "--reference", "r", "--reason", "big", "--actor", "ops"], 2,
         "confirmation_required", "with --yes"),
        (["grant", "acme", "5", "--reference", "r", "--reason", "x", "--actor", "ops", "--expirs", "2030-01-01"], 2,
         "usage", "did you mean '--expires'"),
        (["grnat", "acme", "5"], 2, "usage", "did you mean 'grant'"),
        (["grants", "acme", "--alll"], 2, "usage", "did you mean '--all'"),
        (["grant", "acme", "5", "--reference", "r", "--reason", "x", "--actor", "ops", "--expires", "2026-09-01"], 2,
         "invalid_input", "not in the future"),
        (["grant", "acme", "5", "--reference", "r", "--reason", "x", "--actor", "ops", "--priority", "high"], 2,
         "invalid_input", "whole number from 0 to 1000"),
        (["grant", "acme", "-5", "--reference", "r", "--reason", "x", "--actor", "ops"], 2, "invalid_input",
         "must be positive"),
        (["grant", "acme", "5", "--reference", "r", "--actor", "ops"], 2, "usage", "--reason"),
        (["grant", "acme", "5", "--reference", "r", "--reason", " ", "--actor", "ops"], 2, "invalid_input",
         "--reason is empty"),
        (["grant", "acme", "5", "--reference", "r", "--reason", "x", "--actor", "ops", "--expires", "soon"], 2,
         "invalid_input", "--expires"),
        (["grant", "acmee", "5", "--reference", "r", "--reason", "x", "--actor", "ops"], 2, "unknown_account",
         "unknown account 'acmee'"),
        (["grants", "acmee"], 2, "unknown_account", "unknown account 'acmee'"),
    ],
)  # fmt: skip
def test_grant_commands_refuse_bad_input_and_post_nothing(acme, frozen_clock, capsys, argv, code, error_code, says):
    frozen_clock.set(t("2026-10-01T00:00"))
    got, out, err = run(capsys, *argv, "--json")
    assert got == code and out == ""
    error = json.loads(err)
    validate("error", error)
    assert error["code"] == error_code and says in error["error"], error
    assert acme.execute("SELECT count(*) FROM billing.credit_transactions").fetchone()[0] == 0


def test_grant_above_the_threshold_posts_with_yes(acme, frozen_clock, capsys, monkeypatch):
    frozen_clock.set(t("2026-10-01T00:00"))
    monkeypatch.setenv("BILLING_ADJUST_CONFIRM_ABOVE", "100")
    argv = ["grant", "acme", "150", "--reference", "big-1", "--reason", "launch", "--actor", "ops"]
    assert run(capsys, *argv)[0] == 2
    code, out, _ = run(capsys, *argv, "--yes", "--json")
    assert code == 0 and json.loads(out)["amount"] == "150.000000"
    rows = acme.execute("SELECT type, amount, reason, actor FROM billing.credit_transactions").fetchall()
    assert rows == [("promotional_grant", D("150.000000"), "launch", "ops")]


def test_explain_and_the_marts_state_the_same_credits_to_the_micro_credit(acme, db_url, frozen_clock, tmp_path, capsys):
    s = Scenario(acme, frozen_clock)
    s.october()
    frozen_clock.set(t("2026-11-01T01:00"))
    issue_invoices(acme, OCT, "close-oct")
    s.november()
    d.build(db_url, tmp_path, vars={"as_of": "2026-11-30T00:00:00+00:00"})  # models and every data test

    revenue = d.query(
        db_url,
        "SELECT month, paid_granted, recognised, breakage, deferred, free_granted, promotion_cost, free_expired, "
        "free_remaining, paid_granted_to_date, recognised_to_date, breakage_to_date "
        "FROM analytics.fct_credit_revenue WHERE account_id = 'acme' ORDER BY month",
    )
    assert revenue == [
        (OCT, D(110), D("42.123457"), D(10), D("57.876543"), D(65), D(45), D(15), D(5), D(110), D("42.123457"), D(10)),
        (NOV, D(20), D(65), D(0), D("12.876543"), D(0), D(5), D(0), D(0), D(130), D("107.123457"), D(10)),
    ]
    for month, *_ in revenue:  # the one rule, read two ways: the marts and the reader explain uses
        live = grant_summary(acme, "acme", month)
        row = next(r for r in revenue if r[0] == month)
        assert (row[2], row[3], row[4], row[6]) == (
            live.drawn_paid,
            live.expired_paid,
            live.remaining_paid,
            live.drawn_free,
        )
    balances = d.query(
        db_url,
        "SELECT source_type, kind, priority, granted, drawn, expired, remaining, is_open "
        "FROM analytics.fct_grant_balances WHERE account_id = 'acme' ORDER BY grant_entry_id",
    )
    assert balances == [
        ("topup", "paid", 50, D(100), D(100), D(0), D(0), False),
        ("promotional_grant", "free", 10, D(40), D(25), D(15), D(0), False),
        ("promotional_grant", "free", 10, D(20), D(20), D(0), D(0), False),
        ("topup", "paid", 60, D(10), D(0), D(10), D(0), False),
        ("promotional_grant", "free", 90, D(5), D(5), D(0), D(0), False),
        ("topup", "paid", 50, D(20), D("7.123457"), D(0), D("12.876543"), True),
    ]

    code, out, _ = run(capsys, "explain", "acme", "--month", "2026-10", "--json")
    assert code == 0
    explained = json.loads(out)
    validate("explain", explained)
    code, out, _ = run(capsys, "invoice", "acme", "--month", "2026-10", "--json")
    assert explained["credits"] == json.loads(out)["credits"]  # as issued, to the micro-credit
    code, out, _ = run(capsys, "explain", "acme", "--month", "2026-11", "--json")
    november = json.loads(out)["credits"]
    assert (november["paid_drawn"], november["free_drawn"], november["remaining_paid"], november["as_of_entry_id"]) == (
        "65.000000",
        "5.000000",
        "12.876543",
        None,
    )
    code, out, _ = run(capsys, "explain", "acme", "--month", "2026-10")
    assert "Credits: paid credits drawn +42.123457, free (promotional, SLA, adjustment) credits drawn +45.000000" in out


def test_credit_revenue_keeps_every_month_after_the_used_up_grants(acme, db_url, frozen_clock, tmp_path):
    """Months after the scenario: G1-G4 and G6 are used up by November, G5 by a December usage,
    so from December nothing is left of any grant. The mart still has one row per month up to
    the clock's month (February), with the to-date sums carried: fct_credit_revenue stops a
    used-up grant's month rows at its last draw (so it does not grow by grants x months of
    history) and takes the months from the account, not from its grants."""
    s = Scenario(acme, frozen_clock)
    s.october()
    s.november()
    s.usage("U5", "2026-12-05T10:00", "2026-12-05T11:00", "12.876543")  # the last of G5
    d.build(
        db_url,
        tmp_path,
        extra=["--select", "+fct_credit_revenue", "--indirect-selection", "cautious"],
        vars={"as_of": "2027-02-15T00:00:00+00:00"},
    )
    revenue = d.query(
        db_url,
        "SELECT month, paid_granted, recognised, breakage, deferred, free_remaining, paid_granted_to_date, "
        "recognised_to_date FROM analytics.fct_credit_revenue WHERE account_id = 'acme' ORDER BY month",
    )
    assert revenue == [
        (OCT, D(110), D("42.123457"), D(10), D("57.876543"), D(5), D(110), D("42.123457")),
        (NOV, D(20), D(65), D(0), D("12.876543"), D(0), D(130), D("107.123457")),
        (DEC, D(0), D("12.876543"), D(0), D(0), D(0), D(130), D(120)),
        *[(month, D(0), D(0), D(0), D(0), D(0), D(130), D(120)) for month in (JAN, FEB)],
    ]


def test_the_daily_draw_sums_kept_build_by_build_equal_a_full_refresh(acme, db_url, frozen_clock, tmp_path):
    """int_grant_draws_daily, which both credit marts read, is kept incrementally (the last two
    days written re-summed each build). Built after October, after U4 (11-02: G1 and G6 drawn,
    7.123457 of debt) and after G5 (11-03: the debt paid, a draw written with the grant's entry
    on a later day than the usage that made it), it must hold what one full refresh gives, and
    the marts must read the same from both."""
    s = Scenario(acme, frozen_clock)
    marts = ["--select", "+fct_credit_revenue", "+fct_grant_balances", "--indirect-selection", "cautious"]
    sums = (
        "SELECT grant_entry_id, draw_month, is_expiry, written_day::date, amount, draws "
        "FROM analytics_intermediate.int_grant_draws_daily ORDER BY 1, 2, 3, 4"
    )
    revenue = "SELECT * FROM analytics.fct_credit_revenue ORDER BY account_id, month"
    balances = "SELECT * FROM analytics.fct_grant_balances ORDER BY grant_entry_id"
    as_of = {"as_of": "2026-11-30T00:00:00+00:00"}

    s.october()
    d.build(db_url, tmp_path, extra=marts, vars=as_of)
    s.usage("U4", "2026-11-02T10:00", "2026-11-02T11:05", "70")
    d.build(db_url, tmp_path, extra=marts, vars=as_of)
    s.topup("G5", "2026-11-03T00:00", "20")
    d.build(db_url, tmp_path, extra=marts, vars=as_of)
    kept = [d.query(db_url, q) for q in (sums, revenue, balances)]

    g = s.ids
    november_rows = {(r[0], r[3]): r[4] for r in kept[0] if r[1] == NOV}
    assert november_rows == {
        (g["G1"], date(2026, 11, 2)): D("57.876543"),
        (g["G6"], date(2026, 11, 2)): D(5),
        (g["G5"], date(2026, 11, 3)): D("7.123457"),  # the debt, paid with G5's entry
    }
    assert sum(r[4] for r in kept[0]) == D("42.123457") + D(45) + D(10) + D(15) + D(70)
    assert [r[5] for r in kept[0] if (r[0], r[1]) == (g["G3"], OCT)] == [1, 1]  # U2 and U3, two days

    d.build(db_url, tmp_path, extra=[*marts, "--full-refresh"], vars=as_of)
    assert [d.query(db_url, q) for q in (sums, revenue, balances)] == kept


def test_a_posting_between_the_daily_sums_and_the_marts_is_in_the_marts(acme, db_url, frozen_clock, tmp_path):
    """The marts read the latest draws live (int_grant_draws_current), in the statement that
    reads the grants: G5, posted after the daily sums were built and before the marts, pays
    U4's debt, and both marts show that draw, so the balance identity holds."""
    s = Scenario(acme, frozen_clock)
    as_of = {"as_of": "2026-11-30T00:00:00+00:00"}
    s.october()
    s.usage("U4", "2026-11-02T10:00", "2026-11-02T11:05", "70")  # 7.123457 of debt
    cautious = ["--indirect-selection", "cautious"]  # not the tests that read unbuilt models
    d.build(db_url, tmp_path, extra=["--select", "+fct_credit_revenue", "+fct_grant_balances", *cautious], vars=as_of)
    s.topup("G5", "2026-11-03T00:00", "20")
    # Only the marts (and their tests) this time: the daily sums stay as they were before G5.
    d.build(db_url, tmp_path, extra=["--select", "fct_credit_revenue", "fct_grant_balances", *cautious], vars=as_of)
    assert d.query(db_url, "SELECT max(written_day)::date FROM analytics_intermediate.int_grant_draws_daily") == [
        (date(2026, 11, 2),)
    ]
    assert d.query(
        db_url,
        "SELECT drawn, remaining FROM analytics.fct_grant_balances WHERE grant_entry_id = %s",
        (s.ids["G5"],),
    ) == [(D("7.123457"), D("12.876543"))]
    assert d.query(
        db_url,
        "SELECT recognised, deferred FROM analytics.fct_credit_revenue WHERE account_id = 'acme' AND month = %s",
        (NOV,),
    ) == [(D(65), D("12.876543"))]


def test_the_daily_sums_keep_utc_days_whatever_the_sessions_time_zone(
    acme, db_url, frozen_clock, tmp_path, monkeypatch
):
    """The daily sums' windows are UTC days even on a connection whose time zone keeps daylight
    saving time: New York left it at 06:00 UTC on 1 November 2026. With 2 November the last day
    held, the next build re-sums from 1 November 00:00 UTC; "a day before 2 November 00:00 UTC"
    counted in New York's days is 31 October 23:00 UTC, and the draw of 23:30 would be summed
    again into a day kept."""
    monkeypatch.setenv("PGTZ", "America/New_York")  # every dbt connection's session time zone
    s = Scenario(acme, frozen_clock)
    s.october()
    s.usage("U6", "2026-10-31T22:00", "2026-10-31T23:30", "1")  # in the hour that would be summed twice
    s.usage("U7", "2026-11-01T10:00", "2026-11-01T11:05", "2")
    s.usage("U8", "2026-11-02T04:00", "2026-11-02T05:05", "3")
    rollups = ["--select", "int_grant_draws_daily", "int_ledger_daily", "--indirect-selection", "cautious"]
    sums = (
        "SELECT grant_entry_id, draw_month, is_expiry, written_day, amount, draws "
        "FROM analytics_intermediate.int_grant_draws_daily ORDER BY 1, 2, 3, 4"
    )
    ledger = "SELECT account_id, entry_day, amount, entries FROM analytics_intermediate.int_ledger_daily ORDER BY 1, 2"
    d.build(db_url, tmp_path, extra=["--select", "+int_grant_draws_daily", "+int_ledger_daily", *rollups[3:]])
    full = [d.query(db_url, q) for q in (sums, ledger)]
    d.build(db_url, tmp_path, extra=rollups)  # incremental: re-sums the last two days
    assert [d.query(db_url, q) for q in (sums, ledger)] == full
    assert sum(r[4] for r in full[0] if r[3] == t("2026-10-31T00:00")) == D(1)
