"""`billing explain ACCOUNT --month YYYY-MM`: one month of an account's bill, in plain words.

Both measurements side by side: machine capacity *rented* (from ``machine_usages``) and what
the workloads *consumed* (from Prometheus), with the consumption a rental covers, the
exceptions, and how the month's usage was settled in the ledger. Everything comes from the
dbt marts (``analytics``) and the ledger; nothing is computed here that SQL does not already
state.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from decimal import Decimal

import psycopg

from billing_pipeline.cli.output import credits, emit
from billing_pipeline.db import connect
from billing_pipeline.errors import BillingError, InputError

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
       sum(memory_gib_hours_used) AS memory_gib_hours,
       sum(covered_consumption_amount) AS covered, sum(consumption_charged_amount) AS charged,
       max(exception_reason) AS exception
FROM analytics.fct_usage_reconciliation
WHERE account_id = %(account)s AND hour >= %(start)s AND hour < %(end)s
GROUP BY 1, 2
ORDER BY 1, 2
"""


def register(subparsers, json_parent) -> None:
    p = subparsers.add_parser("explain", parents=[json_parent],
                              help="one month of an account's bill: rented vs consumed, settled, balance")
    p.add_argument("account")
    p.add_argument("--month", required=True, help="the UTC calendar month, YYYY-MM")
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


def explanation(conn: psycopg.Connection, account_id: str, start: datetime, end: datetime) -> dict:
    account = conn.execute("SELECT id, name FROM billing.accounts WHERE id = %s", (account_id,)).fetchone()
    if account is None:
        raise InputError(f"unknown account {account_id!r}: not in billing.accounts.")
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
    return {
        "account_id": account_id, "name": account[1], "month": start.strftime("%Y-%m"),
        "ledger": ledger, "usage": usage, "priced_usage_total": priced_total,
        "not_yet_settled": priced_total + ledger["usage_of_month_settled"],
        "reconciliation": _rows(conn, RECONCILIATION, params),
    }


def render(d: dict) -> str:
    led = d["ledger"]
    out = [f"{d['name']} ({d['account_id']}), {d['month']}",
           f"Balance on the 1st: {credits(led['opening'])} credits; at the end of the month (or now): "
           f"{credits(led['closing'])}.",
           f"Added: top-ups {credits(led['topups'])}, SLA credits {credits(led['sla_credits'])}, "
           f"adjustments {credits(led['adjustments'])}.",
           "", "Machine capacity rented (billed per machine-hour, whether used or not):"]
    rentals = [u for u in d["usage"] if u["usage_kind"] == "machine_rental"]
    consumption = [u for u in d["usage"] if u["usage_kind"] == "workload_consumption"]
    for u in rentals:
        out.append(f"  {u['machine_type']}: {u['charged_quantity'] or ZERO:.4f} machine-hours → {credits(u['amount'])} credits")
    if not rentals:
        out.append("  none")
    out.append("What the workloads consumed (charged by consumption unless a rental of yours covers the node):")
    for u in consumption:
        covered = u["covered_quantity"] or ZERO
        note = f", of which {covered:.4f} on your own rented machines (covered: 0 credits)" if covered else ""
        estimate = " (includes estimated hours, settled again when the metrics are complete)" if u["estimate"] else ""
        out.append(f"  {u['resource']}: {(u['charged_quantity'] or ZERO) + covered:.4f} {u['unit']}{note} "
                   f"→ {credits(u['amount'])} credits{estimate}")
    if not consumption:
        out.append("  none")
    out.append("How they reconcile, node by node:")
    for r in d["reconciliation"]:
        if r["reconciliation_status"] == "covered_by_rental":
            out.append(f"  {r['node_name']}: rented {r['machine_hours']:.4f} machine-hours; your workloads used "
                       f"{r['cpu_core_hours']:.4f} core-hours and {r['memory_gib_hours']:.4f} GiB-hours on it, "
                       f"worth {credits(r['covered'])} credits by consumption, covered by the rental")
        elif r["reconciliation_status"] == "exception":
            out.append(f"  {r['node_name']}: EXCEPTION for {r['hours']} hour(s): {r['exception']}")
        else:
            out.append(f"  {r['node_name']}: {r['reconciliation_status']} for {r['hours']} hour(s), "
                       f"charged {credits(r['charged'])} by consumption")
    if not d["reconciliation"]:
        out.append("  no node-level usage this month")
    out += ["",
            f"Usage of the month, priced (rounded per hour and usage kind): {credits(d['priced_usage_total'])} credits; deducted from the ledger: "
            f"{credits(-led['usage_of_month_settled'])}; not yet deducted: {credits(d['not_yet_settled'])}."]
    return "\n".join(out)


def _explain(args) -> int:
    from billing_pipeline.cli.inputs import parse_month

    start, end = parse_month(args.month)
    with connect() as conn:
        data = explanation(conn, args.account, start, end)
    emit(args, data, render)
    return 0
