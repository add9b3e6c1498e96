"""One month of an account's bill, as a statement: the reads behind `billing explain`.

Both measurements side by side: machine capacity *rented* (``machine_usages``, priced as
``machine_rental``) and what the workloads *consumed* (Prometheus, priced as
``workload_consumption``); what the account's rentals covered; the node-by-node reconciliation;
how the month's usage was settled in the ledger; and, on request, the trail from each usage
ledger entry to the priced lines it paid for.

Its money part is the invoice (``month_account``): for a closed month, the issued invoice itself
(opening, lines, closing, periods); for a month not closed yet, the same computation over what is
posted so far (``invoices.preview_invoice``: the entries by ``billing.ledger_entry_period``, grouped
as the close groups them), plus the usage priced but not yet settled, labelled as such. So
`billing explain`, `billing invoice`, the marts (fct_invoices, fct_invoice_lines) and `billing
status` state one identity: opening + lines = closing.

Everything else comes from the dbt marts (schema ``analytics``) and the ledger (``ledger.queries``);
the only arithmetic here is adding up what SQL already states.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import NamedTuple

import psycopg

from billing_pipeline.core.errors import BillingError, InputError
from billing_pipeline.invoicing.invoices import preview_invoice
from billing_pipeline.ledger.grant_queries import GrantSummary, grant_summary
from billing_pipeline.ledger.keys import period_sql
from billing_pipeline.ledger.queries import UsageEntry, usage_entries, usage_settled

ZERO = Decimal("0")
PRICED_USAGE = "analytics.fct_priced_usage"


class StreamUsage(NamedTuple):
    """The month's priced usage of one stream and resource (and machine type, for rentals)."""

    usage_kind: str  # machine_rental | workload_consumption
    resource: str
    machine_type: str | None
    unit: str
    charged_quantity: Decimal | None  # None when every hour was covered by a rental
    covered_quantity: Decimal | None  # None when no hour was covered
    amount: Decimal
    estimate: bool  # some hours priced from incomplete metrics
    hours: int


class RentedMachines(NamedTuple):
    """Machine-hours rented of one machine type, billed used or not."""

    machine_type: str | None
    unit: str
    machine_hours: Decimal
    hours: int
    amount: Decimal
    estimate: bool


class ConsumedResource(NamedTuple):
    """What the workloads consumed of one resource: charged, plus covered by the account's rentals."""

    resource: str
    unit: str
    quantity: Decimal  # charged_quantity + covered_quantity
    charged_quantity: Decimal
    covered_quantity: Decimal
    hours: int
    amount: Decimal
    estimate: bool


class NodeReconciliation(NamedTuple):
    """Rented capacity against consumption on one node, for one reconciliation status."""

    node_name: str
    reconciliation_status: str  # covered_by_rental | idle_rental | exception | …
    hours: int
    machine_hours: Decimal | None
    cpu_core_hours: Decimal | None
    memory_gib_hours: Decimal | None
    gpu_hours: Decimal | None
    covered: Decimal | None  # consumption the account's rental paid for
    charged: Decimal | None  # consumption charged on top (an exception: another account's machine)
    machine_types: str | None
    first_hour: datetime
    last_hour: datetime
    exception: str | None  # why, for an exception


class CoveredNode(NamedTuple):
    """A node the account rents and used: the consumption its rental covered."""

    node_name: str
    machine_types: str | None
    hours: int
    machine_hours: Decimal | None
    cpu_core_hours: Decimal | None
    memory_gib_hours: Decimal | None
    gpu_hours: Decimal | None
    covered: Decimal | None


class PricedLine(NamedTuple):
    """One priced line of ``fct_priced_usage``: an hour of one deployment or machine and resource."""

    hour: datetime
    usage_kind: str
    deployment_id: str | None
    machine_id: str | None
    machine_type: str | None
    resource: str
    quantity: Decimal
    unit: str
    unit_price: Decimal
    basis: str
    list_amount: Decimal
    amount: Decimal
    coverage: str | None
    is_covered_by_rental: bool
    is_estimate: bool


class TrailEntry(NamedTuple):
    """A usage ledger entry (the fields of ``UsageEntry``) with the priced lines it paid for."""

    entry_id: int
    type: str
    amount: Decimal
    created_at: datetime
    idempotency_key: str
    hour: datetime
    usage_kind: str | None
    is_estimate: bool
    priced_total: Decimal  # the sum of priced_lines' amounts
    priced_lines: list[PricedLine]


class DailySpend(NamedTuple):
    """Priced usage of one UTC day and stream (the statement's and the invoice's chart)."""

    day: date
    stream: str
    spend: Decimal


class StatementLine(NamedTuple):
    """One line of the month's invoice (issued, or as the close would issue it now)."""

    line_no: int
    line_type: (
        str  # usage | topup | auto_topup | sla_credit | promotional_grant | admin_adjustment | reversal | grant_expiry
    )
    usage_kind: str | None
    period: date  # billing.ledger_entry_period of its entries
    prior_period: bool  # entries of an earlier month settled after that month's invoice
    description: str
    amount: Decimal  # signed like the ledger: + credits the account, - debits it
    ledger_entry_ids: list[int]


class MonthAccount(NamedTuple):
    """The money of the month, as its invoice states it: opening + sum(lines) = closing."""

    status: str  # invoiced (the issued invoice) | open (what the close would issue now)
    # The month of the invoice that states this month's money: the month itself, or, for a month
    # the close skipped (a later month was closed first), the later invoice that carries its
    # entries as prior-period lines.
    invoice_month: date
    invoice_number: str | None
    issued_at: datetime | None
    opening: Decimal
    lines: list[StatementLine]
    total: Decimal
    closing: Decimal
    # Entries of this month's period not on this document: posted after its invoice (they go on
    # the next invoice as prior-period lines). Always 0 for an open month.
    settled_after_invoice: Decimal


_INVOICE = """
SELECT id, period_month, invoice_number, issued_at, opening_balance, total, closing_balance
FROM billing.invoices WHERE account_id = %(account)s AND period_month >= %(month)s
ORDER BY period_month LIMIT 1
"""

_INVOICE_LINES = """
SELECT line_no, line_type, usage_kind, period_month, prior_period, description, amount, ledger_entry_ids
FROM billing.invoice_lines WHERE invoice_id = %(invoice)s ORDER BY line_no
"""

_SETTLED_AFTER = f"""
SELECT coalesce(sum(t.amount), 0) FROM billing.credit_transactions t
WHERE t.account_id = %(account)s AND {period_sql("t")} = %(month)s
  AND NOT EXISTS (SELECT 1 FROM billing.invoice_entries ie
                  WHERE ie.ledger_entry_id = t.id AND ie.invoice_id = %(invoice)s)
"""


def month_account(conn: psycopg.Connection, account_id: str, month: date) -> MonthAccount:
    """The month's invoice: the issued one (or, for a month the close skipped, the later invoice
    that holds its entries), else what closing the month now would issue."""
    params = {"account": account_id, "month": month}
    invoice = conn.execute(_INVOICE, params).fetchone()
    if invoice is not None:
        invoice_id, invoice_month, number, issued_at, opening, total, closing = invoice
        params["invoice"] = invoice_id
        lines = [StatementLine._make(row) for row in conn.execute(_INVOICE_LINES, params).fetchall()]
        after = conn.execute(_SETTLED_AFTER, params, prepare=False).fetchone()[0]
        return MonthAccount("invoiced", invoice_month, number, issued_at, opening, lines, total, closing, after)
    preview = preview_invoice(conn, account_id, month)
    lines = [StatementLine._make(row) for row in preview.lines]
    return MonthAccount(
        "open", month, None, None, preview.opening_balance, lines, preview.total, preview.closing_balance, ZERO
    )


@dataclass(frozen=True)
class MonthStatement:
    """An account's month ``[start, end)``: rented vs consumed, what rentals covered, how it was settled."""

    account_id: str
    name: str
    start: datetime
    end: datetime
    account: MonthAccount  # the money of the month: the invoice (issued, or as it stands)
    usage_settled: Decimal  # negative: the ledger's usage entries of the month's hours, posted at any time
    rented: list[RentedMachines]
    consumed: list[ConsumedResource]
    covered_nodes: list[CoveredNode]
    covered_amount: Decimal  # consumption the rentals covered, over every covered node
    reconciliation: list[NodeReconciliation]
    has_estimates: bool  # some hours were priced from incomplete metrics
    priced_usage_total: Decimal  # what the deduction settles (fct_usage_charges, rounded per hour and kind)
    trail: list[TrailEntry] | None  # only when asked for (``detail=True``)
    # Paid and free credits of the month (``ledger.grant_queries.grant_summary``): as the month's
    # issued invoice states them (as of its chain head), else as posted so far.
    credits: GrantSummary | None = None
    credits_as_of: int | None = None  # the invoice's chain head the credits are as of; None: as posted so far

    @property
    def usage_deducted(self) -> Decimal:
        """Usage of the month's hours deducted from the ledger so far (positive)."""
        return -self.usage_settled

    @property
    def not_yet_settled(self) -> Decimal:
        """Usage priced but not yet deducted (the next hourly cycle deducts it); 0 once settled."""
        return self.priced_usage_total + self.usage_settled

    @property
    def reconciliation_exceptions(self) -> list[NodeReconciliation]:
        """Nodes where the workloads ran on a machine another account rents."""
        return [r for r in self.reconciliation if r.reconciliation_status == "exception"]


def invoice_chain_head(conn: psycopg.Connection, account_id: str, month: date) -> int | None:
    """The newest ledger entry of the account when the month's own invoice was issued (0 when it had
    none), or None when the month has no invoice of its own: the point its credits are shown as of."""
    row = conn.execute(
        "SELECT coalesce(chain_head_entry_id, 0) FROM billing.invoices WHERE account_id = %s AND period_month = %s",
        (account_id, month),
    ).fetchone()
    return row[0] if row else None


def account_name(conn: psycopg.Connection, account_id: str) -> str:
    """The account's name; an unknown id is an ``InputError`` (the command line adds the closest
    known id: ``cli.inputs.account_suggestion``, one place for every command)."""
    row = conn.execute("SELECT name FROM billing.accounts WHERE id = %s", (account_id,)).fetchone()
    if row is None:
        raise InputError(f"unknown account {account_id!r}: not in billing.accounts.")
    return row[0]


def priced_usage_built(conn: psycopg.Connection) -> bool:
    """Whether dbt has built the priced-usage marts yet (a fresh database has none)."""
    return conn.execute("SELECT to_regclass(%s)", (PRICED_USAGE,)).fetchone()[0] is not None


_USAGE_BY_STREAM = """
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


def usage_by_stream(conn: psycopg.Connection, account_id: str, start: datetime, end: datetime) -> list[StreamUsage]:
    """Priced usage of ``[start, end)`` per stream, resource and machine type: rentals first."""
    rows = conn.execute(_USAGE_BY_STREAM, {"account": account_id, "start": start, "end": end}).fetchall()
    return [StreamUsage._make(row) for row in rows]


def priced_usage_total(conn: psycopg.Connection, account_id: str, start: datetime, end: datetime) -> Decimal:
    """What the deduction settles for ``[start, end)``: per account, hour and usage kind, rounded
    half-even (``fct_usage_charges``)."""
    return conn.execute(
        "SELECT coalesce(sum(amount), 0) FROM analytics.fct_usage_charges "
        "WHERE account_id = %(account)s AND hour >= %(start)s AND hour < %(end)s",
        {"account": account_id, "start": start, "end": end},
    ).fetchone()[0]


_RECONCILIATION = """
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


def reconciliation_by_node(
    conn: psycopg.Connection, account_id: str, start: datetime, end: datetime
) -> list[NodeReconciliation]:
    """``fct_usage_reconciliation`` of ``[start, end)`` summed per node and status."""
    rows = conn.execute(_RECONCILIATION, {"account": account_id, "start": start, "end": end}).fetchall()
    return [NodeReconciliation._make(row) for row in rows]


_PRICED_LINES = """
SELECT hour, usage_kind, deployment_id, machine_id, machine_type, resource, quantity, unit, unit_price,
       basis, list_amount, amount, coverage, is_covered_by_rental, is_estimate
FROM analytics.fct_priced_usage
WHERE account_id = %(account)s AND hour >= %(start)s AND hour < %(end)s
ORDER BY hour, usage_kind, resource, coalesce(deployment_id, machine_id)
"""


def priced_lines(conn: psycopg.Connection, account_id: str, start: datetime, end: datetime) -> list[PricedLine]:
    """Every priced line of ``[start, end)``, by hour, usage kind, resource, deployment or machine."""
    rows = conn.execute(_PRICED_LINES, {"account": account_id, "start": start, "end": end}).fetchall()
    return [PricedLine._make(row) for row in rows]


def usage_trail(entries: list[UsageEntry], lines: list[PricedLine]) -> list[TrailEntry]:
    """Each usage ledger entry with the priced lines of its hour and usage kind (what it paid for)."""
    by_hour: dict[tuple, list[PricedLine]] = {}
    for line in lines:
        by_hour.setdefault((line.hour, line.usage_kind), []).append(line)
    trail = []
    for entry in entries:
        paid_for = by_hour.get((entry.hour, entry.usage_kind), [])
        trail.append(TrailEntry(*entry, sum((p.amount for p in paid_for), ZERO), paid_for))
    return trail


_DAILY_SPEND = """
SELECT (hour AT TIME ZONE 'UTC')::date AS day, usage_kind AS stream, sum(amount) AS spend
FROM analytics.fct_priced_usage
WHERE account_id = %(account)s AND hour >= %(start)s AND hour < %(end)s
GROUP BY 1, 2 ORDER BY 1, 2
"""


def daily_spend(conn: psycopg.Connection, account_id: str, start: datetime, end: datetime) -> list[DailySpend]:
    """Priced usage of ``[start, end)`` per UTC day and stream, in day then stream order."""
    rows = conn.execute(_DAILY_SPEND, {"account": account_id, "start": start, "end": end}).fetchall()
    return [DailySpend._make(row) for row in rows]


def month_statement(
    conn: psycopg.Connection, account_id: str, start: datetime, end: datetime, *, detail: bool = False
) -> MonthStatement:
    """The statement of ``account_id`` for ``[start, end)``; with ``detail``, the ledger-to-priced-lines trail.

    Raises ``InputError`` for an unknown account and ``BillingError`` before the marts exist.
    """
    name = account_name(conn, account_id)
    if not priced_usage_built(conn):
        raise BillingError(
            "the priced-usage marts do not exist yet (schema analytics): run the pipeline first, "
            "e.g. `billing run --start ... --end ...`."
        )
    account = month_account(conn, account_id, start.date())
    settled = usage_settled(conn, account_id, start, end)
    usage = usage_by_stream(conn, account_id, start, end)
    priced_total = priced_usage_total(conn, account_id, start, end)
    reconciliation = reconciliation_by_node(conn, account_id, start, end)
    rented = [
        RentedMachines(u.machine_type, u.unit, u.charged_quantity or ZERO, u.hours, u.amount, u.estimate)
        for u in usage
        if u.usage_kind == "machine_rental"
    ]
    consumed = []
    for u in usage:
        if u.usage_kind != "workload_consumption":
            continue
        charged, covered = u.charged_quantity or ZERO, u.covered_quantity or ZERO
        consumed.append(
            ConsumedResource(u.resource, u.unit, charged + covered, charged, covered, u.hours, u.amount, u.estimate)
        )
    covered_nodes = [
        CoveredNode(
            r.node_name,
            r.machine_types,
            r.hours,
            r.machine_hours,
            r.cpu_core_hours,
            r.memory_gib_hours,
            r.gpu_hours,
            r.covered,
        )
        for r in reconciliation
        if r.reconciliation_status == "covered_by_rental"
    ]
    credits_as_of = invoice_chain_head(conn, account_id, start.date())
    credits = grant_summary(conn, account_id, start.date(), as_of_entry=credits_as_of)
    trail = None
    if detail:
        trail = usage_trail(usage_entries(conn, account_id, start, end), priced_lines(conn, account_id, start, end))
    return MonthStatement(
        account_id=account_id,
        name=name,
        start=start,
        end=end,
        account=account,
        usage_settled=settled,
        rented=rented,
        consumed=consumed,
        covered_nodes=covered_nodes,
        covered_amount=sum((n.covered or ZERO for n in covered_nodes), ZERO),
        reconciliation=reconciliation,
        has_estimates=any(u.estimate for u in usage),
        priced_usage_total=priced_total,
        trail=trail,
        credits=credits,
        credits_as_of=credits_as_of,
    )
