"""Month-end commands: `billing close-month YYYY-MM [--now ISO]` and
`billing invoice ACCOUNT --month YYYY-MM [--json] [--html FILE] [--pdf FILE]`."""

from __future__ import annotations

from billing_pipeline.cli.inputs import parse_month
from billing_pipeline.cli.output import credits, emit


def register(subparsers, json_parent) -> None:
    p = subparsers.add_parser(
        "close-month",
        parents=[json_parent],
        help="month-end through Dagster: SLA credits, then invoices (refused before the month ends)",
        description="Close a calendar month (UTC) as the monthly schedule would: SLA credits, then one "
        "invoice per account. Closing again issues and posts nothing.",
    )
    p.add_argument("month", help="YYYY-MM")
    p.add_argument("--now", help="the clock (default: the current time); the month must have ended by then")
    p.set_defaults(handler=_close_month)

    p = subparsers.add_parser("invoice", parents=[json_parent], help="an issued invoice (text, JSON, HTML or PDF)")
    p.add_argument("account")
    p.add_argument("--month", required=True, help="YYYY-MM")
    p.add_argument("--html", metavar="FILE", help="write the invoice as HTML to FILE")
    p.add_argument("--pdf", metavar="FILE", help="write the invoice as PDF to FILE")
    p.set_defaults(handler=_invoice)


def _close_month(args) -> int:
    from billing_pipeline.core.clock import clock_input, system_now
    from billing_pipeline.db.connection import database_url
    from billing_pipeline.orchestration.month_end import month_to_close, run_month_end

    # Input errors (exit 2) before anything else: no configuration read, no run launched.
    now = system_now() if args.now is None else clock_input(args.now, "--now")
    month = month_to_close(args.month, now)
    summary = run_month_end(month, now, database_url=database_url())

    def render(d) -> str:
        inv, sla = d["invoices"], d["sla"]
        lines = [
            f"Closed {d['month']} (clock {d['now']}): {d['invoices_issued']} invoice(s) issued"
            + (f", numbers {inv['first_number']}–{inv['last_number']}" if d["invoices_issued"] else "")
            + f"; {d['sla_credits_posted']} SLA credit(s) posted ({sla.get('credited_amount', '0')} credits)."
        ]
        if inv.get("prior_period_lines"):
            lines.append(f"  {inv['prior_period_lines']} prior-period line(s) for usage settled after its invoice.")
        if inv.get("unbilled_hours"):
            lines.append(
                f"  {inv['unbilled_hours']} hour(s) of the month not billed yet (metrics missing or incomplete)."
            )
        if sla.get("no_measurement"):
            lines.append(f"  No probe data at all (no SLA measurement): {', '.join(sla['no_measurement'])}.")
        if not d["invoices_issued"] and not d["sla_credits_posted"]:
            lines.append("  Nothing new: the month was already closed.")
        lines += [f"  run {r['job']} {r['run_id'][:8]} {r['status']}" for r in d["runs"]]
        return "\n".join(lines)

    emit(args, summary, render)
    return 0


def _invoice(args) -> int:
    from billing_pipeline.db.connection import connect
    from billing_pipeline.invoicing.document import load_invoice, render_html, write_pdf

    month = parse_month(args.month)
    with connect() as conn:
        invoice = load_invoice(conn, args.account, month)
    written = []
    if args.html or args.pdf:
        html = render_html(invoice)
        if args.html:
            with open(args.html, "w", encoding="utf-8") as f:
                f.write(html)
            written.append(args.html)
        if args.pdf:
            written.append(str(write_pdf(html, args.pdf)))
    data = {k: v for k, v in invoice.items() if k not in ("period_start", "period_end")}
    if written:
        data["written"] = written

    def render(d) -> str:
        lines = [
            f"Invoice {d['number']} ({d['status']}) of {d['account_id']} for {d['month']}, issued "
            f"{d['issued_at']:%Y-%m-%d %H:%M} UTC",
            f"  opening balance {credits(d['opening_balance'])}",
        ]
        for line in d["lines"]:
            tag = f" [prior period {line['period']}]" if line["prior_period"] else ""
            lines.append(
                f"  {line['line_no']:>3}. {line['description']}{tag}: {credits(line['amount'])} "
                f"({len(line['ledger_entry_ids'])} ledger entr{'y' if len(line['ledger_entry_ids']) == 1 else 'ies'})"
            )
        lines.append(f"  closing balance {credits(d['closing_balance'])}")
        if d["unbilled_hours"]["count"]:
            lines.append(f"  {d['unbilled_hours']['count']} hour(s) of the month not yet billed.")
        head = d["chain_head"]
        lines.append(f"  ledger chain head at issue: entry {head['entry_id']} hash {head['entry_hash']}")
        lines += [f"  written: {w}" for w in written]
        return "\n".join(lines)

    emit(args, data, render)
    return 0
