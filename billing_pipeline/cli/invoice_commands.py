"""Month-end commands: `billing close-month YYYY-MM [--now ISO]` and
`billing invoice ACCOUNT --month YYYY-MM|CURRENT [--json] [--html FILE] [--pdf FILE]`: the issued
invoice, or for a month still open its draft (``status: "draft"``, no number; nothing is issued)."""

from __future__ import annotations

import os

from billing_pipeline.cli.inputs import parse_month
from billing_pipeline.cli.output import emit


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
    p.add_argument(
        "--force",
        action="store_true",
        help="close even though hours of the month are not settled yet and BILLING_MONTH_CLOSE_WAIT_HOURS "
        "(default 72) has not passed since its end; the unbilled hours are listed on each invoice",
    )
    p.set_defaults(handler=_close_month)

    p = subparsers.add_parser(
        "invoice",
        parents=[json_parent],
        help="an account's invoice for a month: the issued one, or the draft of an open month (text, JSON, HTML, PDF)",
        description="The issued invoice of ACCOUNT for the month. For a month not closed yet (CURRENT, or "
        "any month that has begun), the draft: what closing the month would issue from the ledger as it "
        "stands, marked DRAFT, with no number; nothing is issued. An account with no invoice is told why.",
    )
    p.add_argument("account")
    p.add_argument("--month", required=True, help="YYYY-MM, or CURRENT for the month now open")
    p.add_argument(
        "--now", help="the clock a draft is computed at and CURRENT is read from (default: the current time)"
    )
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
    summary = run_month_end(month, now, database_url=database_url(), force=args.force)

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
        if d["forced"] and not d["readiness"]["ready"]:
            lines.append(
                f"  Closed by --force with {d['readiness']['unsettled_hours']} hour(s) of the month not settled."
            )
        if not d["invoices_issued"] and not d["sla_credits_posted"]:
            lines.append("  Nothing new: the month was already closed.")
        lines += [f"  run {r['job']} {r['run_id'][:8]} {r['status']}" for r in d["runs"]]
        return "\n".join(lines)

    emit(args, summary, render)
    return 0


def _invoice(args) -> int:
    from billing_pipeline.core.clock import clock_input, system_now
    from billing_pipeline.db.connection import connect
    from billing_pipeline.invoicing.document import (
        InvoiceSettings,
        balance,
        charge,
        invoice_or_draft,
        render_html,
        write_pdf,
    )
    from billing_pipeline.invoicing.months import month_of

    now = system_now() if args.now is None else clock_input(args.now, "--now")
    month = month_of(now) if args.month.strip().upper() == "CURRENT" else parse_month(args.month)
    settings = InvoiceSettings.from_environ(os.environ) if (args.html or args.pdf) else None
    with connect() as conn:
        invoice = invoice_or_draft(conn, args.account, month, now)
    written = []
    if args.html or args.pdf:
        html = render_html(invoice, settings)
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
        if d["status"] == "draft":
            lines = [
                f"DRAFT invoice of {d['account_id']} for {d['month']} (not issued, no number), as of "
                f"{d['as_of']:%Y-%m-%d %H:%M} UTC.",
                f"  {d['draft_note']}",
            ]
        else:
            lines = [
                f"Invoice {d['number']} ({d['status']}) of {d['account_id']} for {d['month']}, issued "
                f"{d['issued_at']:%Y-%m-%d %H:%M} UTC"
            ]
        lines.append("  Credits; on the lines charges are positive and credits to the account negative.")
        lines.append(f"  opening balance {balance(d['opening_balance'])}")
        for line in d["lines"]:
            tag = f" [prior period {line['period']}]" if line["prior_period"] else ""
            lines.append(
                f"  {line['line_no']:>3}. {line['description']}{tag}: {charge(line['amount'])} "
                f"({len(line['ledger_entry_ids'])} ledger entr{'y' if len(line['ledger_entry_ids']) == 1 else 'ies'})"
            )
        lines.append(f"  closing balance {balance(d['closing_balance'])}")
        if d["unbilled_hours"]["count"]:
            lines.append(f"  {d['unbilled_hours']['count']} hour(s) of the month not yet billed.")
        head = d["chain_head"]
        when = "now" if d["status"] == "draft" else "at issue"
        lines.append(f"  ledger chain head {when}: entry {head['entry_id']} hash {head['entry_hash']}")
        lines += [f"  written: {w}" for w in written]
        return "\n".join(lines)

    emit(args, data, render)
    return 0
