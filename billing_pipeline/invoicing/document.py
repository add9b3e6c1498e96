"""The invoice a customer reads: loaded from the issued (immutable) rows, rendered as HTML from a
Jinja2 template, with a server-side SVG chart of daily spend by stream, and as PDF (WeasyPrint).

Everything shown comes from ``billing.invoices`` and the rows issued with it, so rendering an
invoice twice, months apart, gives the same document.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from html import escape
from pathlib import Path

import psycopg

from billing_pipeline.core.errors import BillingError, InputError
from billing_pipeline.invoicing.months import month_bounds, month_text
from billing_pipeline.ledger.grant_queries import GrantSummary, grant_summary
from billing_pipeline.ledger.invoice_checks import invoice_problems
from billing_pipeline.ledger.keys import usage_hour_sql

TEMPLATES = Path(__file__).resolve().parent / "templates"
STREAMS = (
    ("machine_rental", "Rented capacity", "#3b6ea5"),
    ("workload_consumption", "Workload consumption", "#e07b39"),
)

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

# Daily spend of the invoice's own period, by stream, from the ledger entries it holds.
_DAILY = f"""
SELECT date_trunc('day', {usage_hour_sql("t")}, 'UTC')::date AS day,
       t.reference ->> 'usage_kind' AS stream, -sum(t.amount) AS spend
FROM billing.invoice_lines l
CROSS JOIN LATERAL unnest(l.ledger_entry_ids) AS e (id)
JOIN billing.credit_transactions t ON t.id = e.id
WHERE l.invoice_id = %s AND l.line_type = 'usage' AND NOT l.prior_period
GROUP BY 1, 2
"""


def credits_document(summary: GrantSummary, as_of_entry: int | None = None) -> dict:
    """The month's paid and free credits as the invoice and `billing explain` show them
    (``ledger.grant_queries.grant_summary``; docs/rules/credit-reports.md): positive amounts."""
    return {
        "paid_drawn": summary.drawn_paid,
        "free_drawn": summary.drawn_free,
        "expired": summary.expired,
        "expired_paid": summary.expired_paid,
        "expired_free": summary.expired_free,
        "granted_paid": summary.granted_paid,
        "granted_free": summary.granted_free,
        "remaining_paid": summary.remaining_paid,
        "remaining_free": summary.remaining_free,
        "remaining_total": summary.remaining_paid + summary.remaining_free,
        "remaining_by_expiry": [r._asdict() for r in summary.remaining],
        "as_of_entry_id": as_of_entry,
    }


def _refuse_altered(conn: psycopg.Connection, invoice_id: int, number: str) -> None:
    """An invoice that no longer agrees with the ledger is not shown: its amounts would be forged."""
    problems = invoice_problems(conn, invoice_id)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise BillingError(
            f"invoice {number} does not agree with the ledger, so it is not shown: {problems[0].detail}{more}. "
            "Run `billing verify` and restore the invoice from a backup."
        )


def load_invoice(conn: psycopg.Connection, account_id: str, month: date) -> dict:
    """The issued invoice of ``account_id`` for ``month`` as a JSON-able dict (docs/rules/month-end.md)."""
    row = conn.execute(_INVOICE, (account_id, month)).fetchone()
    if row is None:
        known = conn.execute("SELECT 1 FROM billing.accounts WHERE id = %s", (account_id,)).fetchone()
        if not known:
            raise InputError(f"unknown account {account_id!r}: not in billing.accounts.")
        raise InputError(
            f"account {account_id!r} has no invoice for {month_text(month)}: the month is not closed yet. "
            f"Close it with `billing close-month {month_text(month)}` once it has ended."
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
    details = [
        dict(
            zip(
                (
                    "usage_kind",
                    "resource",
                    "machine_type",
                    "unit",
                    "unit_price",
                    "quantity",
                    "covered_quantity",
                    "amount",
                ),
                r,
            )
        )
        for r in conn.execute(_DETAILS, (invoice_id,)).fetchall()
    ]
    daily = conn.execute(_DAILY, (invoice_id,)).fetchall()
    # As of the chain head at issue, so that the figures never move once issued (an account with no
    # entry then: as of entry 0, i.e. nothing).
    as_of = head_id or 0
    credit_summary = credits_document(grant_summary(conn, account, period, as_of_entry=as_of), as_of)
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
        "previous_invoice": previous_number,
        "lines": lines,
        "sla": sla,
        "resource_detail": details,
        "unbilled_hours": {"count": unbilled_count, "ranges": unbilled},
        "chain_head": {"entry_id": head_id, "account_seq": head_seq, "entry_hash": head_hash},
        "daily_spend": [{"day": d, "stream": s, "spend": v} for d, s, v in sorted(daily)],
        "credits": credit_summary,
    }


def _money(value) -> str:
    value = Decimal(value)
    return f"{value if value else abs(value):+,.6f}"


def _credits(value) -> str:
    """A positive amount of credits with all six places (the Credits block)."""
    return f"{Decimal(value):,.6f}"


def _quantity(value) -> str:
    return f"{Decimal(value):,.4f}"


def _price(value) -> str:
    return f"{Decimal(value).normalize():f}"


def _percent(value) -> str:
    return "—" if value in (None, "") else f"{Decimal(value) * 100:.3f}%"


def spend_chart_svg(invoice: dict, width: int = 720, height: int = 240) -> str:
    """Daily spend by stream (rented capacity, workload consumption) as stacked bars, pure SVG."""
    start = invoice["period_start"].date()
    days = (invoice["period_end"].date() - start).days
    spend = {(r["day"], r["stream"]): Decimal(r["spend"]) for r in invoice["daily_spend"]}
    totals = [
        sum((spend.get((start + timedelta(d), s), Decimal(0)) for s, _, _ in STREAMS), Decimal(0)) for d in range(days)
    ]
    top = max([*totals, Decimal(0)])
    step = _nice_step(top / 4 if top > 0 else Decimal(1))
    ymax = step * 4 if top <= step * 4 else step * 5
    left, right, upper, bottom = 64, 12, 28, 36
    plot_w, plot_h = width - left - right, height - upper - bottom
    bar_w = plot_w / days
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="Daily spend by stream, credits" '
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
                f'fill="#555">{day:%d %b}</text>'
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


def render_html(invoice: dict) -> str:
    """The invoice as one self-contained HTML page (inline CSS and SVG, no JavaScript)."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(money=_money, quantity=_quantity, price=_price, percent=_percent, credits=_credits)
    usage_lines = [line for line in invoice["lines"] if line["type"] == "usage" and not line["prior_period"]]
    streams = []
    for stream, label, colour in STREAMS:
        streams.append(
            {
                "key": stream,
                "label": label,
                "colour": colour,
                "lines": [line for line in usage_lines if line["usage_kind"] == stream],
                "details": [d for d in invoice["resource_detail"] if d["usage_kind"] == stream],
            }
        )
    from markupsafe import Markup

    return env.get_template("invoice.html.j2").render(
        invoice=invoice,
        streams=streams,
        prior_lines=[line for line in invoice["lines"] if line["prior_period"]],
        other_lines=[
            line
            for line in invoice["lines"]
            if not line["prior_period"] and line["type"] not in ("usage", "sla_credit")
        ],
        sla_lines=[line for line in invoice["lines"] if line["type"] == "sla_credit" and not line["prior_period"]],
        chart=Markup(spend_chart_svg(invoice)),
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
