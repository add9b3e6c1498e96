"""`billing explain ACCOUNT --month YYYY-MM [--detail]`: one month of an account's bill, as a statement.

Its money is the month's invoice: for a closed month the issued invoice (opening, lines, closing,
periods), for an open one the same computation over what is posted so far, with the usage not
yet settled said apart (``invoicing.statement.month_account``).

Both measurements side by side (docs/rules/pricing.md): machine capacity *rented* (from
``machine_usages``) and what the workloads *consumed* (from Prometheus). What the account's
rentals covered is said once, in credits; exceptions come with what to do; the ledger shows how
the month's usage was settled. ``--detail`` adds the trail from each usage ledger entry to the
priced lines it paid for (hour, deployment or machine, resource, quantity, unit price).
The figures come from ``invoicing.statement`` (the dbt marts and the ledger); this module only
words and prints them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from billing_pipeline.cli.output import credits, decimal_text, emit, quantity, resource_words, table, unit_words
from billing_pipeline.core.errors import InputError

if TYPE_CHECKING:  # the statement module (and psycopg) load when the command runs, not for --help
    from billing_pipeline.invoicing.statement import MonthStatement

WHAT_TO_DO_EXCEPTION = (
    "Your workloads ran on a machine that another account rents, so they were charged by consumption. "
    "If that machine should be yours, ask support to check its rental (machine_usages) for node {node}; "
    "otherwise move the workloads to your own or to shared nodes."
)
WHAT_TO_DO_ESTIMATE = (
    "Some hours were priced as estimates because their metrics were incomplete; nothing to do: "
    "they are settled again, automatically, once the metrics are complete."
)
WHAT_TO_DO_UNSETTLED = (
    "{amount} credits of this month's usage are priced but not yet deducted; nothing to do: "
    "the next hourly cycle deducts them."
)


def register(subparsers, json_parent) -> None:
    p = subparsers.add_parser(
        "explain",
        parents=[json_parent],
        help="one month of an account's bill: rented vs consumed, settled, balance",
        description="One month of an account's bill as a statement: machines rented and workload consumption "
        "side by side, what the rentals covered, exceptions with what to do, and how it was "
        "settled in the ledger.",
    )
    p.add_argument("account", help="the account id (billing.accounts.id), e.g. acme")
    p.add_argument("--month", required=True, help="the UTC calendar month, YYYY-MM (e.g. 2026-11)")
    p.add_argument(
        "--html",
        metavar="FILE",
        help="also write the statement as an HTML page, with the chart of daily spend by stream "
        "(rented capacity vs workload consumption) the invoice uses",
    )
    p.add_argument(
        "--detail",
        action="store_true",
        help="add the trail from each usage ledger entry to the priced hours it paid for "
        "(hour, deployment or machine, resource, quantity, unit price)",
    )
    p.set_defaults(handler=_explain)


def needs_attention(statement: MonthStatement) -> list[dict]:
    """What in the statement needs the customer's attention, each with what to do."""
    exceptions = [
        {
            "kind": "reconciliation_exception",
            "node_name": r.node_name,
            "hours": r.hours,
            "charged": r.charged,
            "what": r.exception,
            "what_to_do": WHAT_TO_DO_EXCEPTION.format(node=r.node_name),
        }
        for r in statement.reconciliation_exceptions
    ]
    if statement.has_estimates:
        exceptions.append(
            {
                "kind": "estimated_hours",
                "node_name": None,
                "hours": None,
                "charged": None,
                "what": "some hours of the month were priced as estimates (incomplete metrics)",
                "what_to_do": WHAT_TO_DO_ESTIMATE,
            }
        )
    not_yet_settled = statement.not_yet_settled
    if not_yet_settled != 0:
        exceptions.append(
            {
                "kind": "not_yet_deducted",
                "node_name": None,
                "hours": None,
                "charged": not_yet_settled,
                "what": f"{credits(not_yet_settled)} credits of usage priced but not yet deducted",
                "what_to_do": WHAT_TO_DO_UNSETTLED.format(amount=credits(not_yet_settled)),
            }
        )
    return exceptions


def statement_document(statement: MonthStatement) -> dict:
    """The statement as the document `--json` prints (docs/schemas/explain.json) and `render` reads."""
    data = {
        "account_id": statement.account_id,
        "name": statement.name,
        "month": statement.start.strftime("%Y-%m"),
        "invoice": _month_account(statement),
        "rented": [r._asdict() for r in statement.rented],
        "consumed": [c._asdict() for c in statement.consumed],
        "covered_by_rentals": {
            "amount": statement.covered_amount,
            "nodes": [n._asdict() for n in statement.covered_nodes],
        },
        "reconciliation": [r._asdict() for r in statement.reconciliation],
        "exceptions": needs_attention(statement),
        "priced_usage_total": statement.priced_usage_total,
        "usage_deducted": statement.usage_deducted,
        "not_yet_settled": statement.not_yet_settled,
    }
    if statement.credits is not None:
        from billing_pipeline.invoicing.document import credits_document

        data["credits"] = credits_document(statement.credits, statement.credits_as_of)
    if statement.trail is not None:
        data["detail"] = [
            {**e._asdict(), "priced_lines": [p._asdict() for p in e.priced_lines]} for e in statement.trail
        ]
    return data


def _month_account(statement: MonthStatement) -> dict:
    account = statement.account
    return {
        **account._asdict(),
        "lines": [line._asdict() for line in account.lines],
    }


def _account_lines(d: dict) -> list:
    """The invoice part of the statement: opening, lines, closing (the invoice's own identity)."""
    inv = d["invoice"]
    if inv["status"] == "invoiced" and f"{inv['invoice_month']:%Y-%m}" != d["month"]:
        head = (
            f"No invoice of its own (a later month was closed first): its entries are on invoice "
            f"{inv['invoice_number']} for {inv['invoice_month']:%Y-%m}, issued {inv['issued_at']:%Y-%m-%d %H:%M} UTC:"
        )
    elif inv["status"] == "invoiced":
        head = f"Invoice {inv['invoice_number']}, issued {inv['issued_at']:%Y-%m-%d %H:%M} UTC (as issued):"
    else:
        head = "Not closed yet: the invoice as it stands now (entries posted so far; closing the month issues this):"
    rows = [
        [
            line["line_no"],
            line["description"],
            f"{line['period']:%Y-%m}",
            len(line["ledger_entry_ids"]),
            credits(line["amount"]),
        ]
        for line in inv["lines"]
    ]
    out: list = [head, f"Opening balance: {credits(inv['opening'])} credits."]
    if rows:
        out.append(table(["line", "description", "period", ("entries", "right"), ("credits", "right")], rows))
    else:
        out.append("No lines.")
    out.append(
        f"Closing balance: {credits(inv['closing'])} credits (opening {credits(inv['opening'])} + lines "
        f"{credits(inv['total'])})."
    )
    if inv["settled_after_invoice"]:
        out.append(
            f"Settled after this invoice: {credits(inv['settled_after_invoice'])} credits of this month "
            "(they are on the next invoice, as prior-period lines)."
        )
    return out


def _credits_lines(c: dict) -> list:
    """Paid and free credits of the month: what usage drew from each, what expired, what is left."""
    out: list = [
        f"Credits: paid credits drawn {credits(c['paid_drawn'])}, free (promotional, SLA, adjustment) credits "
        f"drawn {credits(c['free_drawn'])}, expired unused {credits(c['expired'])}"
        + (f" (paid {credits(c['expired_paid'])})." if c["expired_paid"] else ".")
    ]
    if c["granted_paid"] or c["granted_free"]:
        out.append(f"Granted this month: paid {credits(c['granted_paid'])}, free {credits(c['granted_free'])}.")
    if c["remaining_by_expiry"]:
        rows = [
            [
                f"{r['expires_at'].astimezone(UTC):%Y-%m-%d %H:%M}" if r["expires_at"] else "never",
                credits(r["paid"]),
                credits(r["free"]),
                credits(r["total"]),
            ]
            for r in c["remaining_by_expiry"]
        ]
        out.append(
            table(
                ["expires (UTC)", ("paid", "right"), ("free", "right"), ("total", "right")],
                rows,
                title=f"Left at the end of the month, by expiry: {credits(c['remaining_total'])} credits",
            )
        )
    else:
        out.append("No credits left in grants at the end of the month.")
    return out


def _hour(value: datetime) -> str:
    return f"{value.astimezone(UTC):%Y-%m-%d %H:00}"


def _streams_table(d: dict):
    """Rented machines and workload consumption, side by side in one table."""
    rows = []
    for r in d["rented"]:
        rows.append(
            [
                "machines rented",
                r["machine_type"],
                f"{quantity(r['machine_hours'])} {unit_words(r['unit'])}",
                "",
                credits(r["amount"]),
            ]
        )
    if not d["rented"]:
        rows.append(["machines rented", "none", "", "", ""])
    for c in d["consumed"]:
        covered = f"{quantity(c['covered_quantity'])} {unit_words(c['unit'])}" if c["covered_quantity"] else ""
        estimate = " (estimate)" if c["estimate"] else ""
        rows.append(
            [
                "workloads consumed",
                resource_words(c["resource"]),
                f"{quantity(c['quantity'])} {unit_words(c['unit'])}",
                covered,
                credits(c["amount"]) + estimate,
            ]
        )
    if not d["consumed"]:
        rows.append(["workloads consumed", "none", "", "", ""])
    return table(["", "what", ("quantity", "right"), ("on your rented machines", "right"), ("credits", "right")], rows)


def _nodes_table(d: dict):
    rows = []
    for r in d["reconciliation"]:
        status = {
            "covered_by_rental": "rented by you, used",
            "idle_rental": "rented by you, idle",
            "exception": "EXCEPTION: rented by another account",
        }.get(r["reconciliation_status"], r["reconciliation_status"])
        rows.append(
            [
                r["node_name"],
                status,
                r["hours"],
                quantity(r["machine_hours"]) if r["machine_hours"] else "",
                quantity(r["cpu_core_hours"]),
                quantity(r["memory_gib_hours"]),
                credits(r["charged"]) if r["reconciliation_status"] == "exception" else "",
            ]
        )
    return table(
        [
            "node",
            "status",
            ("hours", "right"),
            ("machine-hours rented", "right"),
            ("core-hours used", "right"),
            ("GiB-hours used", "right"),
            ("charged by consumption", "right"),
        ],
        rows,
    )


def _detail_table(d: dict):
    rows = []
    for e in d["detail"]:
        rows.append(
            [
                f"#{e['entry_id']}",
                _hour(e["hour"]),
                e["usage_kind"].replace("_", " "),
                "",
                "",
                "",
                "",
                credits(e["amount"]),
            ]
        )
        for p in e["priced_lines"]:
            who = p["deployment_id"] or (f"{p['machine_id']} ({p['machine_type']})" if p["machine_id"] else "")
            covered = " covered" if p["is_covered_by_rental"] else ""
            rows.append(
                [
                    "",
                    "",
                    who,
                    resource_words(p["resource"]),
                    f"{quantity(p['quantity'], 6)} {unit_words(p['unit'])}",
                    decimal_text(p["unit_price"]),
                    credits(p["amount"]) + covered,
                    "",
                ]
            )
    return table(
        [
            "entry",
            "hour (UTC)",
            "deployment / machine",
            "resource",
            ("quantity", "right"),
            ("unit price", "right"),
            ("priced", "right"),
            ("ledger amount", "right"),
        ],
        rows,
        title="Trail: each usage ledger entry and the priced lines it paid for",
    )


def render(d: dict) -> list:
    out: list = [
        f"Statement for {d['name']} ({d['account_id']}), {d['month']} (UTC)",
        *_account_lines(d),
        "",
        "Machines rented (billed per machine-hour, used or not) and what your workloads consumed "
        "(billed by consumption, except on machines you rent):",
        _streams_table(d),
    ]
    covered = d["covered_by_rentals"]
    if covered["nodes"]:
        nodes = ", ".join(f"{n['node_name']} ({n['machine_types']})" for n in covered["nodes"])
        out.append(
            f"Your rentals covered consumption worth {credits(covered['amount'])} credits on {nodes}: "
            "you paid for the machine, not again for what ran on it."
        )
    if d["reconciliation"]:
        out += ["", "Node by node:", _nodes_table(d)]
    out += [
        "",
        f"Usage of the month, priced: {credits(d['priced_usage_total'])} credits; deducted from the ledger: "
        f"{credits(d['usage_deducted'])}; not yet deducted: {credits(d['not_yet_settled'])}"
        + (" (not in the invoice above until it is settled)." if d["not_yet_settled"] else "."),
    ]
    if d.get("credits"):
        out += ["", *_credits_lines(d["credits"])]
    if d["exceptions"]:
        out += ["", "Needs attention:"]
        for x in d["exceptions"]:
            where = f"{x['node_name']}, {x['hours']} hour(s): " if x["node_name"] else ""
            out.append(f"  - {where}{x['what']}.")
            out.append(f"    What to do: {x['what_to_do']}")
    else:
        out += ["", "Nothing needs attention."]
    if "detail" in d:
        out.append("")
        out.append(_detail_table(d) if d["detail"] else "No usage ledger entries for this month.")
    return out


def _explain(args) -> int:
    from billing_pipeline.cli.inputs import parse_month
    from billing_pipeline.core.times import month_bounds
    from billing_pipeline.db import connect
    from billing_pipeline.invoicing.statement import daily_spend, month_statement

    start, end = month_bounds(parse_month(args.month))
    with connect() as conn:
        statement = month_statement(conn, args.account, start, end, detail=args.detail)
        daily = daily_spend(conn, args.account, start, end) if args.html else []
    data = statement_document(statement)
    if args.html:
        data["html"] = str(write_html(data, [day._asdict() for day in daily], start, end, args.html))
    emit(args, data, render)
    return 0


def write_html(data: dict, daily: list[dict], start: datetime, end: datetime, path: str):
    """The statement as one HTML page of the invoice's template family (``invoicing.document``):
    the same header, money summary, line table, sign convention and chart of daily spend."""
    import os
    from pathlib import Path

    from billing_pipeline.invoicing.document import InvoiceSettings, render_statement_html

    page = render_statement_html(data, daily, start, end, InvoiceSettings.from_environ(os.environ))
    target = Path(path)
    try:
        target.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"--html {path}: cannot write the page ({exc.strerror}); choose a writable file") from None
    return target.resolve()
