"""The invoice a customer reads: the issued (immutable) rows, or the draft of a month still open,
rendered as HTML from the Jinja2 templates (``templates/``: one family, shared with ``billing
explain --html``), with a server-side SVG chart of daily spend by stream, and as PDF (WeasyPrint).

An issued invoice shows only what ``billing.invoices`` and the rows issued with it hold, so
rendering it twice, months apart, gives the same document. A draft (``status: "draft"``, no number,
no issue time) is ``invoices.preview_invoice``: what closing the month would issue from the ledger
as it stands; nothing is written.

How the document presents money (docs/rules/month-end.md, "The document"): credits with six places
(as the ledger), quantities with four, unit prices exact as priced; on the lines, charges are
positive and credits to the account carry a minus sign (the JSON keeps the ledger's signs: + credits
the account); balances are said in words (held or owed), never by a sign.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from html import escape
from pathlib import Path

import psycopg

from billing_pipeline.core.errors import BillingError, ConfigurationError, InputError
from billing_pipeline.core.units import resource_words, unit_words
from billing_pipeline.invoicing.months import month_bounds, month_of, month_text
from billing_pipeline.ledger.checkpoint import HEAD_OF
from billing_pipeline.ledger.invoice_checks import invoice_problems
from billing_pipeline.ledger.keys import period_sql, usage_hour_sql

TEMPLATES = Path(__file__).resolve().parent / "templates"
STREAMS = (
    ("machine_rental", "Rented capacity", "#3b6ea5"),
    ("workload_consumption", "Workload consumption", "#e07b39"),
)
MICRO = Decimal("0.000001")


# ---- settings: who sends the invoice, what a credit is worth ------------------------------------

_CREDIT_VALUE = re.compile(r"(?:1\s*credits?\s*=\s*)?([0-9]{1,12}(?:\.[0-9]{1,12})?)\s*([A-Za-z]{3})", re.ASCII)
SELLER_VARIABLES = {
    "BILLING_SELLER_NAME": "name",
    "BILLING_SELLER_ADDRESS": "address",
    "BILLING_SELLER_EMAIL": "email",
    "BILLING_SELLER_TAX_ID": "tax_id",
}


@dataclass(frozen=True)
class InvoiceSettings:
    """The seller block and the value of a credit, as the documents print them.

    Read once from the environment by the command (``from_environ``): ``BILLING_SELLER_NAME``
    (default "Satusky"), ``BILLING_SELLER_ADDRESS`` (lines separated by ``;``),
    ``BILLING_SELLER_EMAIL``, ``BILLING_SELLER_TAX_ID`` and ``BILLING_CREDIT_VALUE`` (``0.01 USD`` or
    ``1 credit = 0.01 USD``; unset: "credits, not currency").
    """

    seller_name: str = "Satusky"
    seller_address: tuple[str, ...] = ()
    seller_email: str | None = None
    seller_tax_id: str | None = None
    credit_value: Decimal | None = None
    credit_currency: str | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> InvoiceSettings:
        """The settings from ``environ``; a value that cannot be printed on an invoice is a
        ``ConfigurationError`` naming the variable."""
        values: dict = {}
        for variable, field in SELLER_VARIABLES.items():
            raw = (environ.get(variable) or "").strip()
            if not raw:
                continue
            if len(raw) > 300 or any(not c.isprintable() for c in raw):
                raise ConfigurationError(
                    f"{variable} must be one line of printable text of at most 300 characters "
                    f"(address lines separated by ';'); got {raw[:40]!r}."
                )
            values[field] = raw
        value = (environ.get("BILLING_CREDIT_VALUE") or "").strip()
        amount = currency = None
        if value:
            match = _CREDIT_VALUE.fullmatch(value)
            if not match or Decimal(match[1]) <= 0:
                raise ConfigurationError(
                    f"BILLING_CREDIT_VALUE {value[:40]!r} is not the value of one credit: write it as "
                    "AMOUNT CURRENCY, e.g. 0.01 USD (or 1 credit = 0.01 USD), or leave it unset "
                    "(the invoice then says amounts are credits, not currency)."
                )
            amount, currency = Decimal(match[1]), match[2].upper()
        return cls(
            seller_name=values.get("name", cls.seller_name),
            seller_address=tuple(p.strip() for p in values.get("address", "").split(";") if p.strip()),
            seller_email=values.get("email"),
            seller_tax_id=values.get("tax_id"),
            credit_value=amount,
            credit_currency=currency,
        )

    @property
    def credit_value_text(self) -> str:
        """What a credit is worth, in the words every document prints."""
        if self.credit_value is None:
            return "credits, not currency"
        return f"1 credit = {self.credit_value.normalize():f} {self.credit_currency}"

    def worth(self, amount: Decimal) -> str | None:
        """``amount`` credits in the configured currency (two places, half-even), or None."""
        if self.credit_value is None:
            return None
        value = (abs(amount) * self.credit_value).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)
        return f"{value:,.2f} {self.credit_currency}"


# ---- the issued invoice --------------------------------------------------------------------------

_INVOICE = """
SELECT i.id, i.invoice_number, i.number, i.status, i.account_id, a.name, a.email, i.period_month,
       i.opening_balance, i.total, i.closing_balance, i.issued_at, i.unbilled_hours, i.unbilled_hour_count,
       i.chain_head_entry_id, i.chain_head_seq, i.chain_head_hash, p.invoice_number
FROM billing.invoices i
JOIN billing.accounts a ON a.id = i.account_id
LEFT JOIN billing.invoices p ON p.id = i.previous_invoice_id
WHERE i.account_id = %s AND i.period_month = %s
"""

_LINES = """
SELECT line_no, line_type, usage_kind, period_month, prior_period, description, amount, ledger_entry_ids, detail
FROM billing.invoice_lines WHERE invoice_id = %s ORDER BY line_no
"""

_DETAILS = """
SELECT usage_kind, resource, machine_type, unit, unit_price, quantity, covered_quantity, amount
FROM billing.invoice_line_details WHERE invoice_id = %s
ORDER BY usage_kind, resource, machine_type NULLS FIRST, unit_price
"""

# The same detail for a draft: what the close would write beneath the usage lines (invoices._DETAILS).
_DRAFT_DETAILS = """
SELECT u.usage_kind, u.resource, u.machine_type, u.unit, u.unit_price,
       coalesce(sum(u.quantity) FILTER (WHERE u.coverage IS DISTINCT FROM 'covered_by_rental'), 0),
       coalesce(sum(u.quantity) FILTER (WHERE u.coverage = 'covered_by_rental'), 0),
       sum(u.amount)
FROM analytics.fct_priced_usage u
WHERE u.account_id = %(account)s AND u.hour >= %(start)s AND u.hour < %(end)s
GROUP BY 1, 2, 3, 4, 5
ORDER BY 1, 2, 3 NULLS FIRST, 5
"""

# Daily spend of the document's own period, by stream, from the ledger entries of its usage lines.
_DAILY = f"""
SELECT date_trunc('day', {usage_hour_sql("t")}, 'UTC')::date AS day,
       t.reference ->> 'usage_kind' AS stream, -sum(t.amount) AS spend
FROM billing.credit_transactions t
WHERE t.id = ANY(%s::bigint[])
GROUP BY 1, 2
"""

# Why an account has no issued invoice for a month: what the close looks at (invoices._ACCOUNTS).
_ABSENCE = f"""
SELECT a.created_at,
       later.invoice_number, later.period_month,
       (SELECT min(i.issued_at) FROM billing.invoices i WHERE i.period_month = %(month)s) AS month_closed_at,
       EXISTS (SELECT 1 FROM billing.invoices i WHERE i.account_id = a.id AND i.period_month < %(month)s),
       EXISTS (SELECT 1 FROM (
           SELECT {period_sql("t")} AS period FROM billing.credit_transactions t WHERE t.account_id = a.id
           OFFSET 0) p WHERE p.period <= %(month)s)
FROM billing.accounts a
LEFT JOIN LATERAL (
    SELECT i.invoice_number, i.period_month FROM billing.invoices i
    WHERE i.account_id = a.id AND i.period_month > %(month)s ORDER BY i.period_month LIMIT 1
) later ON true
WHERE a.id = %(account)s
"""


def _refuse_altered(conn: psycopg.Connection, invoice_id: int, number: str) -> None:
    """An invoice that no longer agrees with the ledger is not shown: its amounts would be forged."""
    problems = invoice_problems(conn, invoice_id)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise BillingError(
            f"invoice {number} does not agree with the ledger, so it is not shown: {problems[0].detail}{more}. "
            "Run `billing verify` and restore the invoice from a backup."
        )


def _details(rows) -> list[dict]:
    keys = ("usage_kind", "resource", "machine_type", "unit", "unit_price", "quantity", "covered_quantity", "amount")
    return [dict(zip(keys, r, strict=True)) for r in rows]


def _daily(conn: psycopg.Connection, lines: list[dict]) -> list[dict]:
    ids = [
        i for line in lines if line["type"] == "usage" and not line["prior_period"] for i in line["ledger_entry_ids"]
    ]
    rows = conn.execute(_DAILY, (ids,)).fetchall() if ids else []
    return [{"day": d, "stream": s, "spend": v} for d, s, v in sorted(rows)]


def load_invoice(conn: psycopg.Connection, account_id: str, month: date) -> dict:
    """The issued invoice of ``account_id`` for ``month`` as a JSON-able dict (docs/rules/month-end.md).

    No issued invoice is an ``InputError`` that says why (``no_invoice_reason``)."""
    row = conn.execute(_INVOICE, (account_id, month)).fetchone()
    if row is None:
        raise InputError(
            no_invoice_reason(conn, account_id, month) or f"no invoice for {account_id} in {month_text(month)}."
        )
    (
        invoice_id,
        number,
        seq,
        status,
        account,
        name,
        email,
        period,
        opening,
        total,
        closing,
        issued_at,
        unbilled,
        unbilled_count,
        head_id,
        head_seq,
        head_hash,
        previous_number,
    ) = row
    _refuse_altered(conn, invoice_id, number)
    lines = []
    sla = []
    for line_no, line_type, usage_kind, line_period, prior, description, amount, ids, detail in conn.execute(
        _LINES, (invoice_id,)
    ).fetchall():
        lines.append(
            {
                "line_no": line_no,
                "type": line_type,
                "usage_kind": usage_kind,
                "description": description,
                "amount": amount,
                "ledger_entry_ids": list(ids),
                "period": month_text(line_period),
                "prior_period": prior,
            }
        )
        if line_type == "sla_credit":
            sla.append(
                {
                    "deployment_id": detail.get("deployment_id"),
                    "amount": amount,
                    "ledger_entry_ids": list(ids),
                    "period": month_text(line_period),
                    "measurement": {
                        k: detail.get(k)
                        for k in (
                            "availability",
                            "measured_minutes",
                            "down_minutes",
                            "unmeasured_minutes",
                            "excluded_minutes",
                            "eligible_minutes",
                            "tier",
                            "credit_share",
                            "base",
                        )
                    },
                }
            )
    return {
        "number": number,
        "sequence": seq,
        "status": status,
        "account_id": account,
        "account_name": name,
        "account_email": email,
        "month": month_text(period),
        "period_start": month_bounds(period)[0],
        "period_end": month_bounds(period)[1],
        "opening_balance": opening,
        "closing_balance": closing,
        "total": total,
        "issued_at": issued_at,
        "as_of": issued_at,
        "draft_note": None,
        "previous_invoice": previous_number,
        "lines": lines,
        "sla": sla,
        "resource_detail": _details(conn.execute(_DETAILS, (invoice_id,)).fetchall()),
        "unbilled_hours": {"count": unbilled_count, "ranges": unbilled},
        "chain_head": {"entry_id": head_id, "account_seq": head_seq, "entry_hash": head_hash},
        "daily_spend": _daily(conn, lines),
    }


# ---- no invoice: why, or the draft --------------------------------------------------------------


def no_invoice_reason(
    conn: psycopg.Connection, account_id: str, month: date, now: datetime | None = None
) -> str | None:
    """Why ``account_id`` has no issued invoice for ``month`` and will not get one from a close
    now, in words; None when it would (the month is open for it: ``draft_invoice`` shows it).

    Checked in the close's own terms (``invoices``): an account gets an invoice for a month when it
    has none for that month or a later one, and it existed before the month ended, had an earlier
    invoice, or has entries of that period or before."""
    from billing_pipeline.invoicing.statement import account_name

    account_name(conn, account_id)  # an unknown account: InputError with the closest known id
    created_at, later_number, later_month, _closed_at, has_previous, has_entries = conn.execute(
        _ABSENCE, {"account": account_id, "month": month}
    ).fetchone()
    m = month_text(month)
    end = month_bounds(month)[1]
    if created_at >= end and not has_previous and not has_entries:
        return (
            f"no invoice for {account_id} in {m}: it had no entries in or before that month (the account was "
            f"created on {created_at:%Y-%m-%d}, after the month ended). Its first invoice is for the month of "
            "its first entry."
        )
    if later_number is not None:
        return (
            f"no invoice for {account_id} in {m}: {month_text(later_month)} was closed first, so the entries of "
            f"{m} are on invoice {later_number} (for {month_text(later_month)}), as prior-period lines. "
            f"Show it with `billing invoice {account_id} --month {month_text(later_month)}`."
        )
    if now is not None and month > month_of(now):
        return (
            f"no invoice for {account_id} in {m}: the month has not begun (it is {now:%Y-%m-%d %H:%M} UTC). "
            f"`--month CURRENT` shows the draft of {month_text(month_of(now))}."
        )
    return None


def draft_invoice(conn: psycopg.Connection, account_id: str, month: date, now: datetime) -> dict:
    """The invoice ``account_id`` would get for ``month`` if the month were closed now, marked as a
    draft: ``invoices.preview_invoice`` (the close's own statements, rolled back), no number, no
    issue time; nothing is written. Raises ``InputError`` when no close would give it one."""
    from billing_pipeline.invoicing.invoices import preview_invoice, unbilled_hours

    reason = no_invoice_reason(conn, account_id, month, now)
    if reason:
        raise InputError(reason)
    name, email, previous_number, closed_at = conn.execute(
        "SELECT a.name, a.email, "
        "(SELECT i.invoice_number FROM billing.invoices i WHERE i.account_id = a.id AND i.period_month < %(month)s "
        " ORDER BY i.period_month DESC LIMIT 1), "
        "(SELECT min(i.issued_at) FROM billing.invoices i WHERE i.period_month = %(month)s) "
        "FROM billing.accounts a WHERE a.id = %(account)s",
        {"account": account_id, "month": month},
    ).fetchone()
    preview = preview_invoice(conn, account_id, month)
    start, end = month_bounds(month)
    lines = [
        {
            "line_no": line_no,
            "type": line_type,
            "usage_kind": usage_kind,
            "description": description,
            "amount": amount,
            "ledger_entry_ids": list(ids),
            "period": month_text(period),
            "prior_period": prior,
        }
        for line_no, line_type, usage_kind, period, prior, description, amount, ids in preview.lines
    ]
    details = []
    if conn.execute("SELECT to_regclass('analytics.fct_priced_usage')").fetchone()[0] is not None:
        details = _details(
            conn.execute(_DRAFT_DETAILS, {"account": account_id, "start": start, "end": min(end, now)}).fetchall()
        )
    head = conn.execute(HEAD_OF.format(account="%s"), (account_id,), prepare=False).fetchone()
    unbilled = unbilled_hours(conn, month, until=now)
    m = month_text(month)
    if closed_at is not None:
        note = (
            f"{m} was closed on {closed_at:%Y-%m-%d} before {account_id} had anything to invoice for it; "
            f"closing it again (`billing close-month {m}`) issues this invoice."
        )
    elif end > now:
        note = f"{m} is still open: this is the invoice as it stands on {now:%Y-%m-%d %H:%M} UTC."
    else:
        note = f"{m} has ended but is not closed yet: closing it (`billing close-month {m}`) issues this invoice."
    return {
        "number": None,
        "sequence": None,
        "status": "draft",
        "account_id": account_id,
        "account_name": name,
        "account_email": email,
        "month": m,
        "period_start": start,
        "period_end": end,
        "opening_balance": preview.opening_balance,
        "closing_balance": preview.closing_balance,
        "total": preview.total,
        "issued_at": None,
        "as_of": now,
        "draft_note": note,
        "previous_invoice": previous_number,
        "lines": lines,
        "sla": [],
        "resource_detail": details,
        "unbilled_hours": {"count": sum(r["hours"] for r in unbilled), "ranges": unbilled},
        "chain_head": {
            "entry_id": head[1] if head else None,
            "account_seq": head[0] if head else None,
            "entry_hash": head[2] if head else None,
        },
        "daily_spend": _daily(conn, lines),
    }


def invoice_or_draft(conn: psycopg.Connection, account_id: str, month: date, now: datetime) -> dict:
    """The issued invoice of the month, else its draft (an open month), else an ``InputError``
    saying why there is none."""
    if conn.execute(_INVOICE, (account_id, month)).fetchone() is not None:
        return load_invoice(conn, account_id, month)
    return draft_invoice(conn, account_id, month, now)


# ---- how the documents write numbers -------------------------------------------------------------


def _credits_text(value) -> str:
    """Credits, six places, thousands separated, no sign."""
    value = abs(Decimal(value)).quantize(MICRO, rounding=ROUND_HALF_EVEN)
    return f"{value:,.6f}"


def charge(value) -> str:
    """A line amount as the documents show it: charges positive, credits with a minus sign.
    ``value`` is signed as the ledger (+ credits the account), so the sign flips."""
    value = Decimal(value).quantize(MICRO, rounding=ROUND_HALF_EVEN)
    return ("\u2212" if value > 0 else "") + _credits_text(value)


def balance(value) -> str:
    """A balance in words: "91.696607 held" / "3.000000 owed" (never a sign)."""
    value = Decimal(value)
    return f"{_credits_text(value)} {'owed' if value < 0 else 'held'}"


def quantity_text(value) -> str:
    """A measured quantity: four places."""
    return f"{Decimal(value or 0):,.4f}"


def price_text(value) -> str:
    """A unit price exactly as priced, at least four places."""
    value = Decimal(value).normalize()
    if value.as_tuple().exponent > -4:
        value = value.quantize(Decimal("0.0001"))
    return f"{value:f}"


def percent_text(value) -> str:
    return "—" if value in (None, "") else f"{Decimal(value) * 100:.3f}%"


def period_text(start: datetime, end: datetime) -> str:
    """``[start, end)`` as people write a billing period: "Nov 1 – Nov 30, 2026"."""
    last = (end - timedelta(seconds=1)).date()
    first = start.date()
    if first.year == last.year:
        return f"{first:%b} {first.day} – {last:%b} {last.day}, {last.year}"
    return f"{first:%b} {first.day}, {first.year} – {last:%b} {last.day}, {last.year}"


def _hour_range(r: dict) -> str:
    return f"{r['from'][:16].replace('T', ' ')} – {r['to'][:16].replace('T', ' ')} UTC"


# ---- the model the templates read ----------------------------------------------------------------


def _detail_rows(details: list[dict]) -> list[dict]:
    rows = []
    for d in details:
        what = resource_words(d["resource"])
        if d.get("machine_type"):
            what = f"{d['machine_type']} machine" if d["resource"] == "machine" else f"{what} ({d['machine_type']})"
        covered = d.get("covered_quantity") or 0
        rows.append(
            {
                "what": what,
                "quantity": f"{quantity_text(d['quantity'])} {unit_words(d['unit'], d['quantity'])}",
                "covered": f"{quantity_text(covered)} {unit_words(d['unit'], covered)}" if covered else None,
                "unit_price": price_text(d["unit_price"]),
                "amount": charge(-Decimal(d["amount"])),
            }
        )
    return rows


def document_lines(lines: list[dict], details: list[dict]) -> list[dict]:
    """The lines as the document's table shows them: charges positive, credits negative, usage
    lines of the period with their resource detail beneath (shown, not summed)."""
    out = []
    for line in lines:
        usage_kind = line.get("usage_kind")
        beneath = []
        if line["type"] == "usage" and not line["prior_period"]:
            beneath = _detail_rows([d for d in details if d["usage_kind"] == usage_kind])
        out.append(
            {
                "line_no": line["line_no"],
                "description": line["description"],
                "period": line["period"],
                "prior_period": line["prior_period"],
                "entries": len(line["ledger_entry_ids"]),
                "amount": charge(line["amount"]),
                "is_credit": Decimal(line["amount"]) > 0,
                "colour": next((c for k, _, c in STREAMS if k == usage_kind), None),
                "details": beneath,
            }
        )
    return out


def money_summary(opening, lines: list[dict], closing) -> dict:
    """Opening, used, added, other, closing: the identity every page states, in credits.

    *used* is the net of the usage lines (charges), *added* the lines that credit the account
    (top-ups, SLA credits, positive adjustments), *other* the rest (negative adjustments, reversals
    of top-ups, expired credits); closing = opening − used + added − other."""
    used = -sum((Decimal(line["amount"]) for line in lines if line["type"] == "usage"), Decimal(0))
    added = sum(
        (Decimal(line["amount"]) for line in lines if line["type"] != "usage" and Decimal(line["amount"]) > 0),
        Decimal(0),
    )
    other = -sum(
        (Decimal(line["amount"]) for line in lines if line["type"] != "usage" and Decimal(line["amount"]) < 0),
        Decimal(0),
    )
    return {
        "opening": balance(opening),
        "used": charge(-used),
        "added": charge(added),
        "other": charge(-other) if other else None,
        "closing": balance(closing),
        "closing_value": Decimal(closing),
        "net": charge(Decimal(closing) - Decimal(opening)),
    }


def spend_chart_svg(invoice: dict, width: int = 720, height: int = 150) -> str:
    """Daily spend by stream (rented capacity, workload consumption) as stacked bars, pure SVG.

    It scales to the width of its box (``viewBox``), so it stays inside the page margins."""
    start = invoice["period_start"].date()
    days = (invoice["period_end"].date() - start).days
    spend: dict = {}
    for r in invoice["daily_spend"]:
        key = (r["day"], r["stream"])
        spend[key] = spend.get(key, Decimal(0)) + Decimal(r["spend"])
    totals = [
        sum((spend.get((start + timedelta(d), s), Decimal(0)) for s, _, _ in STREAMS), Decimal(0)) for d in range(days)
    ]
    top = max([*totals, Decimal(0)])
    step = _nice_step(top / 4 if top > 0 else Decimal(1))
    ymax = step * 4 if top <= step * 4 else step * 5
    left, right, upper, bottom = 64, 12, 26, 22
    plot_w, plot_h = width - left - right, height - upper - bottom
    bar_w = plot_w / days
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}" '
        f'preserveAspectRatio="xMinYMin meet" role="img" aria-label="Daily spend by stream, credits" '
        'font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="10">'
    ]
    ticks = int(ymax / step)
    for i in range(ticks + 1):
        value = step * i
        y = upper + plot_h - float(value / ymax) * plot_h
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y + 3:.1f}" text-anchor="end" fill="#555">{escape(_axis(value))}</text>')
    for d in range(days):
        day = start + timedelta(d)
        x = left + d * bar_w
        y = upper + plot_h
        for stream, label, colour in STREAMS:
            value = spend.get((day, stream), Decimal(0))
            if value <= 0:
                continue
            h = float(value / ymax) * plot_h
            y -= h
            out.append(
                f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{max(bar_w - 2, 1):.1f}" height="{h:.1f}" '
                f'fill="{colour}"><title>{day:%d %b}: {escape(label)} {value:.6f}</title></rect>'
            )
        if d % 5 == 0 or d == days - 1:
            out.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{upper + plot_h + 14}" text-anchor="middle" '
                f'fill="#555">{day:%b} {day.day}</text>'
            )
    out.append(f'<line x1="{left}" y1="{upper + plot_h}" x2="{width - right}" y2="{upper + plot_h}" stroke="#888"/>')
    lx = left
    for _stream, label, colour in STREAMS:
        out.append(
            f'<rect x="{lx}" y="8" width="10" height="10" fill="{colour}"/>'
            f'<text x="{lx + 14}" y="17" fill="#333">{escape(label)}</text>'
        )
        lx += 24 + 7 * len(label)
    out.append(f'<text x="{width - right}" y="17" text-anchor="end" fill="#555">credits per UTC day</text>')
    out.append("</svg>")
    return "\n".join(out)


def _nice_step(raw: Decimal) -> Decimal:
    exponent = raw.adjusted()
    base = Decimal(10) ** exponent
    for m in (1, 2, 2.5, 5, 10):
        step = base * Decimal(str(m))
        if step >= raw:
            return step
    return base * 10


def _axis(value: Decimal) -> str:
    return f"{value.normalize():f}" if value else "0"


def _environment():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=StrictUndefined,
    )
    env.filters.update(
        charge=charge,
        balance=balance,
        credits=_credits_text,
        quantity=quantity_text,
        price=price_text,
        percent=percent_text,
        hour_range=_hour_range,
        units=unit_words,
        resource=resource_words,
    )
    return env


def render_html(invoice: dict, settings: InvoiceSettings | None = None) -> str:
    """The invoice (issued or draft) as one self-contained HTML page (inline CSS and SVG, no
    JavaScript), laid out for A4 (one page for a short invoice; WeasyPrint paginates a long one)."""
    from markupsafe import Markup

    settings = settings or InvoiceSettings()
    lines = invoice["lines"]
    current = [line for line in lines if not line["prior_period"]]
    sla_lines = [line for line in lines if line["type"] == "sla_credit" and not line["prior_period"]]
    sla_rows = []
    for line in sla_lines:
        found = next((s for s in invoice["sla"] if s["ledger_entry_ids"] == line["ledger_entry_ids"]), None)
        if found:
            sla_rows.append({"line": line, "deployment_id": found["deployment_id"], "m": found["measurement"]})
    summary = money_summary(invoice["opening_balance"], lines, invoice["closing_balance"])
    return (
        _environment()
        .get_template("invoice.html.j2")
        .render(
            invoice=invoice,
            settings=settings,
            period=period_text(invoice["period_start"], invoice["period_end"]),
            lines=document_lines(current, invoice["resource_detail"]),
            prior_lines=document_lines([line for line in lines if line["prior_period"]], []),
            sla_rows=sla_rows,
            summary=summary,
            worth=settings.worth(invoice["closing_balance"]) if Decimal(invoice["closing_balance"]) else None,
            chart=Markup(spend_chart_svg(invoice)),
        )
    )


def render_statement_html(
    statement: dict, daily: list[dict], start: datetime, end: datetime, settings: InvoiceSettings | None = None
) -> str:
    """``billing explain``'s statement (``cli.explain.statement_document``) as a page of the same
    family as the invoice: header, money of the month, both streams, nodes, attention, trail."""
    from markupsafe import Markup

    settings = settings or InvoiceSettings()
    inv = statement["invoice"]
    lines = [
        {**line, "type": line["line_type"], "period": f"{line['period']:%Y-%m}"}
        for line in statement["invoice"]["lines"]
    ]
    return (
        _environment()
        .get_template("statement.html.j2")
        .render(
            s=statement,
            inv=inv,
            settings=settings,
            period=period_text(start, end),
            lines=document_lines(lines, []),
            summary=money_summary(inv["opening"], lines, inv["closing"]),
            chart=Markup(spend_chart_svg({"period_start": start, "period_end": end, "daily_spend": daily})),
        )
    )


def write_pdf(html: str, path: str | Path) -> Path:
    """The HTML as a PDF, by WeasyPrint (needs Pango from the system: see scripts/setup)."""
    try:
        from weasyprint import HTML
    except OSError as exc:  # Pango missing
        raise BillingError(
            f"WeasyPrint cannot load its system libraries ({exc}); install Pango "
            "(Debian: apt-get install libpango-1.0-0 libpangoft2-1.0-0) or run scripts/setup."
        ) from None
    path = Path(path)
    HTML(string=html, base_url=str(TEMPLATES)).write_pdf(path)
    return path
