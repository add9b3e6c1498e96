"""Month-end test data: a month of priced usage bulk-inserted in SQL (not 720 hours through
Prometheus), settled into the ledger by the real deduction, probe minutes, lifecycle intervals."""

from __future__ import annotations

from datetime import UTC, datetime, timezone
from decimal import Decimal

import psycopg

from billing_pipeline.invoicing.months import month_bounds, parse_month
from tests.support.contracts import stand_in_ddl
from tests.support.payments import USAGE_CHARGES_DDL

# analytics.fct_priced_usage as its dbt contract says (tests/support/contracts.py); the real table
# comes from dbt.
PRICED_USAGE_DDL = stand_in_ddl("fct_priced_usage")

# Per account: workload cpu on its deployment (a price change mid-month), memory, and for some a
# rented machine. Amounts have more than six decimals so rounding is exercised.
USAGE_SQL = """
INSERT INTO analytics.fct_priced_usage (hour, account_id, usage_kind, resource, deployment_id, machine_type,
                                        coverage, quantity, unit, unit_price, amount)
SELECT h, a.account_id, 'workload_consumption', 'cpu', a.deployment_id, NULL, 'charged',
       q.qty, 'core_hour', p.price, q.qty * p.price
FROM generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '1 hour', interval '1 hour') AS h
CROSS JOIN unnest(%(accounts)s::text[], %(deployments)s::text[]) AS a (account_id, deployment_id)
CROSS JOIN LATERAL (SELECT 0.25 + (extract(hour FROM h) %% 7) * 0.0312345 AS qty) q
CROSS JOIN LATERAL (SELECT CASE WHEN h < %(start)s::timestamptz + interval '14 days' THEN 0.0421 ELSE 0.0455 END AS price) p
UNION ALL
SELECT h, a.account_id, 'workload_consumption', 'memory', a.deployment_id, NULL, 'charged',
       1.5, 'gib_hour', 0.0051234567, 1.5 * 0.0051234567
FROM generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '1 hour', interval '1 hour') AS h
CROSS JOIN unnest(%(accounts)s::text[], %(deployments)s::text[]) AS a (account_id, deployment_id)
UNION ALL
SELECT h, a.account_id, 'machine_rental', 'machine', NULL, 'cpu-medium', 'rental',
       1, 'machine_hour', 0.1234567, 0.1234567
FROM generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '1 hour', interval '1 hour') AS h
CROSS JOIN unnest(%(renters)s::text[]) AS a (account_id)
"""


def create_priced_usage_mart(conn: psycopg.Connection) -> None:
    conn.execute(PRICED_USAGE_DDL)


def create_platform(
    conn: psycopg.Connection, accounts: dict[str, str], created_at: datetime = datetime(2026, 1, 1, tzinfo=UTC)
) -> None:
    """Accounts (id -> deployment id), each with one deployment, created before the month."""
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO billing.accounts (id, name, email, created_at) VALUES (%s, %s, %s, %s)",
            [(a, f"Account {a}", f"{a}@example.test", created_at) for a in accounts],
        )
        cur.executemany(
            "INSERT INTO billing.deployments (id, account_id, namespace, name, created_at) VALUES (%s, %s, %s, %s, %s)",
            [(d, a, f"{a}-prod", "web", created_at) for a, d in accounts.items()],
        )


def insert_month_usage(conn: psycopg.Connection, month: str, accounts: dict[str, str], renters: list[str]) -> None:
    start, end = month_bounds(parse_month(month))
    conn.execute(
        USAGE_SQL,
        {
            "start": start,
            "end": end,
            "accounts": list(accounts),
            "deployments": list(accounts.values()),
            "renters": renters,
        },
    )


def mark_metric_hours(conn: psycopg.Connection, month: str, incomplete: list[datetime] = ()) -> None:
    """Every hour of the month ingested and complete, except ``incomplete``."""
    start, end = month_bounds(parse_month(month))
    conn.execute(
        "INSERT INTO billing.metric_hours (hour, complete) "
        "SELECT h, NOT (h = ANY(%s::timestamptz[])) FROM generate_series(%s::timestamptz, %s::timestamptz - interval '1 hour', "
        "interval '1 hour') h ON CONFLICT (hour) DO UPDATE SET complete = EXCLUDED.complete",
        (list(incomplete), start, end),
    )


def insert_probe_month(
    conn: psycopg.Connection, deployment_id: str, month: str, *, down_minutes: int = 0, skip_hours: int = 0
) -> None:
    """Probe minutes for every hour of the month (all measured), ``down_minutes`` of them down
    (spread from the first hour on, 60 per hour), the first ``skip_hours`` hours without samples."""
    start, end = month_bounds(parse_month(month))
    conn.execute(
        """
        INSERT INTO billing.probe_deployment_hours (hour, deployment_id, measured_minutes, down_minutes, minute_states)
        SELECT h, %(dep)s, 60, d, repeat('d', d) || repeat('u', 60 - d)
        FROM (
            SELECT h, least(60, greatest(0, %(down)s - (row_number() OVER (ORDER BY h) - 1) * 60))::int AS d
            FROM generate_series(%(start)s::timestamptz + %(skip)s * interval '1 hour',
                                 %(end)s::timestamptz - interval '1 hour', interval '1 hour') h
        ) x
        """,
        {"dep": deployment_id, "start": start, "end": end, "down": down_minutes, "skip": skip_hours},
    )


def record_transition(
    conn: psycopg.Connection, account_id: str, seq: int, from_state: str, to_state: str, at: datetime
) -> None:
    """A lifecycle transition as grace_period_job records it (only the fields month-end reads)."""
    conn.execute(
        "INSERT INTO billing.lifecycle_events (event_key, account_id, kind, action, from_state, to_state, outcome, "
        "decided_at) VALUES (%s, %s, 'transition', 'transition', %s, %s, 'done', %s)",
        (f"{account_id}:transition:{seq}", account_id, from_state, to_state, at),
    )


def topup(conn: psycopg.Connection, account_id: str, amount: str, key: str) -> None:
    """A top-up posted now by the product's clock: a test sets it (``frozen_clock``) first."""
    from billing_pipeline.ledger import Entry, post_entry

    post_entry(conn, Entry(account_id, "topup", Decimal(amount), key))


# What dbt's fct_usage_charges holds: per account, hour and usage kind, the priced usage summed
# and rounded half-even to micro-credits (the round_half_even macro, spelled out for the stand-in).
_CHARGES = """
DELETE FROM analytics.fct_usage_charges WHERE hour >= %(start)s AND hour < %(end)s;
INSERT INTO analytics.fct_usage_charges (hour, account_id, usage_kind, amount, amount_exact, is_estimate, priced_row_count)
SELECT hour, account_id, usage_kind,
       CASE WHEN abs(x * 1000000 - trunc(x * 1000000)) = 0.5
            THEN (trunc(x * 1000000) + CASE WHEN mod(trunc(x * 1000000), 2) = 0 THEN 0 ELSE sign(x) END) / 1000000
            ELSE round(x, 6) END,
       x, estimate, n
FROM (SELECT hour, account_id, usage_kind, sum(amount) AS x, bool_or(is_estimate) AS estimate, count(*) AS n
      FROM analytics.fct_priced_usage WHERE hour >= %(start)s AND hour < %(end)s
      GROUP BY 1, 2, 3) s
"""


def settle(conn: psycopg.Connection, start: datetime, end: datetime):
    """Roll the stand-in priced usage of ``[start, end)`` up into fct_usage_charges (as dbt would),
    then settle it into the ledger with the real deduction."""
    from billing_pipeline.ledger.deduction import settle_priced_usage

    conn.execute(USAGE_CHARGES_DDL)
    for statement in _CHARGES.split(";\n"):
        conn.execute(statement, {"start": start, "end": end})
    conn.commit()
    return settle_priced_usage(conn, start, end)
