"""`billing explain ACCOUNT --month YYYY-MM [--detail]`: one month of an account's bill, as a statement.

Both measurements side by side (contract §4): machine capacity *rented* (from
``machine_usages``) and what the workloads *consumed* (from Prometheus). What the account's
rentals covered is said once, in credits; exceptions come with what to do; the ledger shows how
the month's usage was settled. ``--detail`` adds the trail from each usage ledger entry to the
priced lines it paid for (hour, deployment or machine, resource, quantity, unit price).
Everything comes from the dbt marts (``analytics``) and the ledger; nothing is computed here that
SQL does not already state.
"""

from __future__ import annotations

import difflib
import re
from datetime import datetime, timezone
from decimal import Decimal

import psycopg

from billing_pipeline.cli.output import credits, decimal_text, emit, quantity, resource_words, table, unit_words
from billing_pipeline.core.errors import BillingError, InputError
from billing_pipeline.db import connect

ZERO = Decimal("0")

LEDGER_MOVEMENTS = """
SELECT
    coalesce(sum(amount) FILTER (WHERE created_at < %(start)s), 0) AS opening,
    coalesce(sum(amount) FILTER (WHERE created_at < %(end)s), 0) AS closing,
    coalesce(sum(amount) FILTER (WHERE created_at >= %(start)s AND created_at < %(end)s
                                 AND type IN ('topup', 'auto_topup')), 0) AS topups,
    coalesce(sum(amount) FILTER (WHERE created_at >= %(start)s AND created_at < %(end)s
                                 AND type = 'sla_credit'), 0) AS sla_credits,
    coalesce(sum(amount) FILTER (WHERE created_at >= %(start)s AND created_at < %(end)s
                                 AND type = 'admin_adjustment'), 0) AS adjustments,
    coalesce(sum(amount) FILTER (WHERE created_at >= %(start)s AND created_at < %(end)s
                                 AND (type = 'usage_deduction' OR (type = 'reversal' AND reference ? 'hour'))), 0)
        AS usage_settled_in_month,
    coalesce(sum(amount) FILTER (WHERE (type = 'usage_deduction' OR (type = 'reversal' AND reference ? 'hour'))
                                 AND (reference->>'hour')::timestamptz >= %(start)s
                                 AND (reference->>'hour')::timestamptz < %(end)s), 0) AS usage_of_month_settled
FROM billing.credit_transactions
WHERE account_id = %(account)s
"""

USAGE_BY_STREAM = """
SELECT usage_kind, resource, machine_type, unit,
       sum(quantity) FILTER (WHERE NOT is_covered_by_rental) AS charged_quantity,
       sum(quantity) FILTER (WHERE is_covered_by_rental) AS covered_quantity,
       sum(amount) AS amount, bool_or(is_estimate) AS estimate,
       count(DISTINCT hour) AS hours
FROM analytics.fct_priced_usage
WHERE account_id = %(account)s AND hour >= %(start)s AND hour < %(end)s
GROUP BY 1, 2, 3, 4
ORDER BY 1 DESC, 2, 3
"""

RECONCILIATION = """
SELECT node_name, reconciliation_status, count(*) AS hours,
       sum(machine_hours_rented) AS machine_hours, sum(cpu_core_hours_used) AS cpu_core_hours,
       sum(memory_gib_hours_used) AS memory_gib_hours, sum(gpu_hours_requested) AS gpu_hours,
       sum(covered_consumption_amount) AS covered, sum(consumption_charged_amount) AS charged,
       string_agg(DISTINCT machine_types, ', ') AS machine_types,
       min(hour) AS first_hour, max(hour) AS last_hour,
       max(exception_reason) AS exception
FROM analytics.fct_usage_reconciliation
WHERE account_id = %(account)s AND hour >= %(start)s AND hour < %(end)s
GROUP BY 1, 2
ORDER BY 1, 2
"""

# --detail: every usage ledger entry whose hour lies in the month, with the priced lines of its
# account, hour and usage kind (what it paid for).
USAGE_ENTRIES = """
SELECT id AS entry_id, type, amount, created_at, idempotency_key,
       (reference->>'hour')::timestamptz AS hour, reference->>'usage_kind' AS usage_kind,
       coalesce((reference->>'is_estimate')::boolean, false) AS is_estimate
FROM billing.credit_transactions
WHERE account_id = %(account)s AND type IN ('usage_deduction', 'reversal') AND reference ? 'hour'
  AND (reference->>'hour')::timestamptz >= %(start)s AND (reference->>'hour')::timestamptz < %(end)s
ORDER BY (reference->>'hour')::timestamptz, reference->>'usage_kind', id
"""

PRICED_LINES = """
SELECT hour, usage_kind, deployment_id, machine_id, machine_type, resource, quantity, unit, unit_price,
       basis, list_amount, amount, coverage, is_covered_by_rental, is_estimate
FROM analytics.fct_priced_usage
WHERE account_id = %(account)s AND hour >= %(start)s AND hour < %(end)s
ORDER BY hour, usage_kind, resource, coalesce(deployment_id, machine_id)
"""

WHAT_TO_DO_EXCEPTION = (
    "Your workloads ran on a machine that another account rents, so they were charged by consumption. "
    "If that machine should be yours, ask support to check its rental (machine_usages) for node {node}; "
    "otherwise move the workloads to your own or to shared nodes."
)
WHAT_TO_DO_ESTIMATE = ("Some hours were priced as estimates because their metrics were incomplete; nothing to do: "
                       "they are settled again, automatically, once the metrics are complete.")
WHAT_TO_DO_UNSETTLED = ("{amount} credits of this month's usage are priced but not yet deducted; nothing to do: "
                        "the next hourly cycle deducts them.")


def register(subparsers, json_parent) -> None:
    p = subparsers.add_parser(
        "explain", parents=[json_parent],
        help="one month of an account's bill: rented vs consumed, settled, balance",
        description="One month of an account's bill as a statement: machines rented and workload consumption "
                    "side by side, what the rentals covered, exceptions with what to do, and how it was "
                    "settled in the ledger.")
    p.add_argument("account", help="the account id (billing.accounts.id), e.g. acme")
    p.add_argument("--month", required=True, help="the UTC calendar month, YYYY-MM (e.g. 2026-11)")
    p.add_argument("--html", metavar="FILE",
                   help="also write the statement as an HTML page, with the chart of daily spend by stream "
                        "(rented capacity vs workload consumption) the invoice uses")
    p.add_argument("--detail", action="store_true",
                   help="add the trail from each usage ledger entry to the priced hours it paid for "
                        "(hour, deployment or machine, resource, quantity, unit price)")
    p.set_defaults(handler=_explain)


def month_window(text: str) -> tuple[datetime, datetime]:
    match = re.fullmatch(r"(\d{4})-(\d{2})", text.strip())
    if not match or not 1 <= int(match[2]) <= 12:
        raise InputError(f"--month {text!r} is not a month; write it as YYYY-MM, e.g. 2026-11.")
    year, month = int(match[1]), int(match[2])
    start = datetime(year, month, 1, tzinfo=timezone.utc)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=timezone.utc)
    return start, end


def _rows(conn: psycopg.Connection, query: str, params: dict) -> list[dict]:
    cur = conn.execute(query, params)
    names = [c.name for c in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


def _trail(entries: list[dict], lines: list[dict]) -> list[dict]:
    """Each usage ledger entry with the priced lines of its hour and usage kind."""
    by_hour: dict[tuple, list[dict]] = {}
    for line in lines:
        by_hour.setdefault((line["hour"], line["usage_kind"]), []).append(line)
    trail = []
    for e in entries:
        priced = by_hour.get((e["hour"], e["usage_kind"]), [])
        trail.append({**e, "priced_total": sum((p["amount"] for p in priced), ZERO), "priced_lines": priced})
    return trail


def explanation(conn: psycopg.Connection, account_id: str, start: datetime, end: datetime,
                *, detail: bool = False) -> dict:
    account = conn.execute("SELECT id, name FROM billing.accounts WHERE id = %s", (account_id,)).fetchone()
    if account is None:
        known = [r[0] for r in conn.execute("SELECT id FROM billing.accounts ORDER BY id").fetchall()]
        close = difflib.get_close_matches(account_id, known, n=1, cutoff=0.6)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise InputError(f"unknown account {account_id!r}: not in billing.accounts.{hint}")
    params = {"account": account_id, "start": start, "end": end}
    if conn.execute("SELECT to_regclass('analytics.fct_priced_usage')").fetchone()[0] is None:
        raise BillingError("the priced-usage marts do not exist yet (schema analytics): run the pipeline first, "
                           "e.g. `billing run --start ... --end ...`.")
    ledger = _rows(conn, LEDGER_MOVEMENTS, params)[0]
    usage = _rows(conn, USAGE_BY_STREAM, params)
    # What the deduction settles: per account, hour and usage kind, rounded half-even (fct_usage_charges).
    priced_total = conn.execute(
        "SELECT coalesce(sum(amount), 0) FROM analytics.fct_usage_charges "
        "WHERE account_id = %(account)s AND hour >= %(start)s AND hour < %(end)s", params).fetchone()[0]
    reconciliation = _rows(conn, RECONCILIATION, params)
    rented = [
        {"machine_type": u["machine_type"], "unit": u["unit"], "machine_hours": u["charged_quantity"] or ZERO,
         "hours": u["hours"], "amount": u["amount"], "estimate": u["estimate"]}
        for u in usage if u["usage_kind"] == "machine_rental"
    ]
    consumed = [
        {"resource": u["resource"], "unit": u["unit"],
         "quantity": (u["charged_quantity"] or ZERO) + (u["covered_quantity"] or ZERO),
         "charged_quantity": u["charged_quantity"] or ZERO, "covered_quantity": u["covered_quantity"] or ZERO,
         "hours": u["hours"], "amount": u["amount"], "estimate": u["estimate"]}
        for u in usage if u["usage_kind"] == "workload_consumption"
    ]
    covered_nodes = [
        {"node_name": r["node_name"], "machine_types": r["machine_types"], "hours": r["hours"],
         "machine_hours": r["machine_hours"], "cpu_core_hours": r["cpu_core_hours"],
         "memory_gib_hours": r["memory_gib_hours"], "gpu_hours": r["gpu_hours"], "covered": r["covered"]}
        for r in reconciliation if r["reconciliation_status"] == "covered_by_rental"
    ]
    not_yet_settled = priced_total + ledger["usage_of_month_settled"]
    exceptions = [
        {"kind": "reconciliation_exception", "node_name": r["node_name"], "hours": r["hours"],
         "charged": r["charged"], "what": r["exception"],
         "what_to_do": WHAT_TO_DO_EXCEPTION.format(node=r["node_name"])}
        for r in reconciliation if r["reconciliation_status"] == "exception"
    ]
    if any(u["estimate"] for u in usage):
        exceptions.append({"kind": "estimated_hours", "node_name": None, "hours": None, "charged": None,
                           "what": "some hours of the month were priced as estimates (incomplete metrics)",
                           "what_to_do": WHAT_TO_DO_ESTIMATE})
    if not_yet_settled != 0:
        exceptions.append({"kind": "not_yet_deducted", "node_name": None, "hours": None, "charged": not_yet_settled,
                           "what": f"{credits(not_yet_settled)} credits of usage priced but not yet deducted",
                           "what_to_do": WHAT_TO_DO_UNSETTLED.format(amount=credits(not_yet_settled))})
    data = {
        "account_id": account_id, "name": account[1], "month": start.strftime("%Y-%m"),
        "ledger": ledger,
        "rented": rented,
        "consumed": consumed,
        "covered_by_rentals": {
            "amount": sum((n["covered"] or ZERO for n in covered_nodes), ZERO),
            "nodes": covered_nodes,
        },
        "reconciliation": reconciliation,
        "exceptions": exceptions,
        "priced_usage_total": priced_total,
        "usage_deducted": -ledger["usage_of_month_settled"],
        "not_yet_settled": not_yet_settled,
    }
    if detail:
        data["detail"] = _trail(_rows(conn, USAGE_ENTRIES, params), _rows(conn, PRICED_LINES, params))
    return data


def _hour(value: datetime) -> str:
    return f"{value.astimezone(timezone.utc):%Y-%m-%d %H:00}"


def _streams_table(d: dict):
    """Rented machines and workload consumption, side by side in one table."""
    rows = []
    for r in d["rented"]:
        rows.append(["machines rented", r["machine_type"], f"{quantity(r['machine_hours'])} {unit_words(r['unit'])}",
                     "", credits(r["amount"])])
    if not d["rented"]:
        rows.append(["machines rented", "none", "", "", ""])
    for c in d["consumed"]:
        covered = (f"{quantity(c['covered_quantity'])} {unit_words(c['unit'])}" if c["covered_quantity"] else "")
        estimate = " (estimate)" if c["estimate"] else ""
        rows.append(["workloads consumed", resource_words(c["resource"]),
                     f"{quantity(c['quantity'])} {unit_words(c['unit'])}", covered, credits(c["amount"]) + estimate])
    if not d["consumed"]:
        rows.append(["workloads consumed", "none", "", "", ""])
    return table(["", "what", ("quantity", "right"), ("on your rented machines", "right"), ("credits", "right")], rows)


def _nodes_table(d: dict):
    rows = []
    for r in d["reconciliation"]:
        status = {"covered_by_rental": "rented by you, used", "idle_rental": "rented by you, idle",
                  "exception": "EXCEPTION: rented by another account"}.get(r["reconciliation_status"],
                                                                          r["reconciliation_status"])
        rows.append([r["node_name"], status, r["hours"],
                     quantity(r["machine_hours"]) if r["machine_hours"] else "",
                     quantity(r["cpu_core_hours"]), quantity(r["memory_gib_hours"]),
                     credits(r["charged"]) if r["reconciliation_status"] == "exception" else ""])
    return table(["node", "status", ("hours", "right"), ("machine-hours rented", "right"),
                  ("core-hours used", "right"), ("GiB-hours used", "right"), ("charged by consumption", "right")],
                 rows)


def _detail_table(d: dict):
    rows = []
    for e in d["detail"]:
        rows.append([f"#{e['entry_id']}", _hour(e["hour"]), e["usage_kind"].replace("_", " "), "", "", "", "",
                     credits(e["amount"])])
        for p in e["priced_lines"]:
            who = p["deployment_id"] or (f"{p['machine_id']} ({p['machine_type']})" if p["machine_id"] else "")
            covered = " covered" if p["is_covered_by_rental"] else ""
            rows.append(["", "", who, resource_words(p["resource"]),
                         f"{quantity(p['quantity'], 6)} {unit_words(p['unit'])}", decimal_text(p["unit_price"]),
                         credits(p["amount"]) + covered, ""])
    return table(["entry", "hour (UTC)", "deployment / machine", "resource", ("quantity", "right"),
                  ("unit price", "right"), ("priced", "right"), ("ledger amount", "right")], rows,
                 title="Trail: each usage ledger entry and the priced lines it paid for")


def render(d: dict) -> list:
    led = d["ledger"]
    out: list = [
        f"Statement for {d['name']} ({d['account_id']}), {d['month']} (UTC)",
        f"Balance on the 1st: {credits(led['opening'])} credits. At the end of the month (or now): "
        f"{credits(led['closing'])} credits.",
        f"Added this month: top-ups {credits(led['topups'])}, SLA credits {credits(led['sla_credits'])}, "
        f"adjustments {credits(led['adjustments'])}.",
        "",
        "Machines rented (billed per machine-hour, used or not) and what your workloads consumed "
        "(billed by consumption, except on machines you rent):",
        _streams_table(d),
    ]
    covered = d["covered_by_rentals"]
    if covered["nodes"]:
        nodes = ", ".join(f"{n['node_name']} ({n['machine_types']})" for n in covered["nodes"])
        out.append(f"Your rentals covered consumption worth {credits(covered['amount'])} credits on {nodes}: "
                   "you paid for the machine, not again for what ran on it.")
    if d["reconciliation"]:
        out += ["", "Node by node:", _nodes_table(d)]
    out += ["",
            f"Usage of the month, priced: {credits(d['priced_usage_total'])} credits; deducted from the ledger: "
            f"{credits(d['usage_deducted'])}; not yet deducted: {credits(d['not_yet_settled'])}."]
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

    start, end = parse_month(args.month)
    with connect() as conn:
        data = explanation(conn, args.account, start, end, detail=args.detail)
        daily = _rows(conn, DAILY_SPEND, {"account": args.account, "start": start, "end": end}) if args.html else []
    if args.html:
        data["html"] = str(write_html(data, daily, start, end, args.html))
    emit(args, data, render)
    return 0


# The month's priced usage per UTC day and stream, for the statement's chart.
DAILY_SPEND = """
SELECT (hour AT TIME ZONE 'UTC')::date AS day, usage_kind AS stream, sum(amount) AS spend
FROM analytics.fct_priced_usage
WHERE account_id = %(account)s AND hour >= %(start)s AND hour < %(end)s
GROUP BY 1, 2 ORDER BY 1, 2
"""


def write_html(data: dict, daily: list[dict], start: datetime, end: datetime, path: str):
    """The statement as one HTML page: the invoice's spend chart (SVG, no JavaScript), then the
    statement as the command prints it."""
    import io
    from html import escape
    from pathlib import Path

    from rich.console import Console

    from billing_pipeline.invoicing.document import spend_chart_svg

    console = Console(record=True, width=118, file=io.StringIO(), color_system=None)
    for item in render(data):
        console.print(item)
    chart = spend_chart_svg({"period_start": start, "period_end": end, "daily_spend": daily})
    title = f"Statement for {data['name']} ({data['account_id']}), {data['month']}"
    page = (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            "<style>body{font-family:'DejaVu Sans',Helvetica,Arial,sans-serif;margin:2em;color:#222}"
            "pre{font-size:12px;line-height:1.35}</style></head><body>"
            f"<h1>{escape(title)}</h1><h2>Daily spend by stream</h2>{chart}"
            f"<pre>{escape(console.export_text())}</pre></body></html>\n")
    target = Path(path)
    try:
        target.write_text(page)
    except OSError as exc:
        raise InputError(f"--html {path}: cannot write the page ({exc.strerror}); choose a writable file") from None
    return target.resolve()
