"""SLA credits (docs/rules/month-end.md): monthly availability per deployment, credited once.

``credit_sla(conn, month)`` runs in one transaction under an advisory lock:

1. **Measure** every deployment that existed during the month and has no measurement yet, in one
   SQL statement, into ``billing.sla_measurements`` (append-only: a measurement that paid a credit
   never changes, so closing again posts nothing new and cannot conflict):
   * *eligible* minutes: the deployment existed, and its account was not in ``grace_period`` or
     ``expired`` (intervals from the ``transition`` events of ``billing.lifecycle_events``): routing
     turned off for non-payment is not an outage. Minute ``[m, m+1)`` counts when ``m`` is inside.
   * measured / down minutes from ``billing.probe_deployment_hours``: hours wholly eligible are
     summed as stored; hours cut by an exclusion are counted minute by minute from their states.
   * unmeasured = eligible − measured: shown, never taken as down.
   * availability = (measured − down) / measured; the tier is the most severe row of
     ``billing.sla_credit_tiers`` whose threshold the availability is below.
   * base = the month's workload consumption of the deployment (``analytics.fct_priced_usage``,
     ``usage_kind = workload_consumption``); credit = base × share, kept exact in the measurement
     and rounded half-even to micro-credits by the ledger module when posted (its one rounding rule).
2. **Credit** each measurement with outcome ``credit`` as one ``sla_credit`` ledger entry, key
   ``sla:<deployment>:<YYYY-MM>`` (``ledger.keys.sla_key``), the measurement in its reference (through the ledger module).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

import psycopg

from billing_pipeline.invoicing.months import month_bounds, month_text
from billing_pipeline.ledger import Entry, post_entries, round_credits
from billing_pipeline.ledger.keys import sla_key_sql

SLA_LOCK = "billing.sla_credit"
PRICED_USAGE = "analytics.fct_priced_usage"
# The same columns, no rows: the base when the models were never built.
NO_PRICED_USAGE = (
    "(SELECT NULL::text AS deployment_id, NULL::numeric AS amount, NULL::text AS usage_kind, "
    "NULL::timestamptz AS hour WHERE false)"
)


def _minutes(ranges: str) -> str:
    """SQL: how many minute starts lie inside the multirange ``ranges``."""
    first = (
        "(date_trunc('minute', lower(r)) + CASE WHEN lower(r) = date_trunc('minute', lower(r)) "
        "THEN interval '0' ELSE interval '1 minute' END)"
    )
    return (
        f"(SELECT coalesce(sum(greatest(0, ceil(extract(epoch FROM upper(r) - {first}) / 60))), 0)::integer "
        f"FROM unnest({ranges}) AS r)"
    )


_MEASURE = f"""
WITH deps AS (
    SELECT d.id AS deployment_id, d.account_id,
           tstzrange(greatest(d.created_at, %(start)s), least(coalesce(d.deleted_at, %(end)s), %(end)s)) AS existed
    FROM billing.deployments d
    WHERE d.created_at < %(end)s AND (d.deleted_at IS NULL OR d.deleted_at > %(start)s)
      AND NOT EXISTS (SELECT 1 FROM billing.sla_measurements m
                      WHERE m.deployment_id = d.id AND m.month = %(month)s)
), transitions AS (
    SELECT e.account_id, e.to_state, e.decided_at,
           lead(e.decided_at) OVER (PARTITION BY e.account_id ORDER BY e.decided_at, e.id) AS until
    FROM billing.lifecycle_events e
    WHERE e.kind = 'transition' AND e.decided_at < %(end)s
      AND e.account_id IN (SELECT account_id FROM deps)
), excluded AS (
    SELECT account_id, range_agg(tstzrange(decided_at, coalesce(until, 'infinity'))) AS ranges
    FROM transitions
    WHERE to_state IN ('grace_period', 'expired') AND (until IS NULL OR until > decided_at)
    GROUP BY account_id
), eligible AS (
    SELECT d.deployment_id, d.account_id,
           {_minutes("tstzmultirange(d.existed)")} AS existed_minutes,
           tstzmultirange(d.existed) - coalesce(x.ranges, '{{}}'::tstzmultirange) AS ranges
    FROM deps d LEFT JOIN excluded x USING (account_id)
), probe AS NOT MATERIALIZED (
    SELECT p.deployment_id, p.hour, p.measured_minutes, p.down_minutes, p.minute_states, e.ranges,
           e.ranges @> tstzrange(p.hour, p.hour + interval '1 hour') AS whole
    FROM billing.probe_deployment_hours p
    JOIN eligible e USING (deployment_id)
    WHERE p.hour >= %(start)s AND p.hour < %(end)s
      AND e.ranges && tstzrange(p.hour, p.hour + interval '1 hour')
), partial_hours AS MATERIALIZED (
    -- hours cut by an exclusion (grace, creation, deletion): few, counted minute by minute
    SELECT deployment_id, hour, minute_states, ranges FROM probe WHERE NOT whole
), counted AS (
    SELECT deployment_id, sum(measured_minutes) AS measured, sum(down_minutes) AS down
    FROM probe WHERE whole GROUP BY deployment_id
    UNION ALL
    SELECT p.deployment_id,
           count(*) FILTER (WHERE substr(p.minute_states, k + 1, 1) <> '.'),
           count(*) FILTER (WHERE substr(p.minute_states, k + 1, 1) = 'd')
    FROM partial_hours p CROSS JOIN generate_series(0, 59) AS k
    WHERE p.ranges @> (p.hour + k * interval '1 minute')
    GROUP BY p.deployment_id
), measured AS (
    SELECT deployment_id, sum(measured)::integer AS measured, sum(down)::integer AS down
    FROM counted GROUP BY deployment_id
), base AS (
    SELECT u.deployment_id, sum(u.amount) AS base
    FROM {{priced_usage}} u
    WHERE u.usage_kind = 'workload_consumption' AND u.hour >= %(start)s AND u.hour < %(end)s
      AND u.deployment_id IN (SELECT deployment_id FROM deps)
    GROUP BY u.deployment_id
), rows AS (
    SELECT e.deployment_id, e.account_id, e.existed_minutes,
           {_minutes("e.ranges")} AS eligible_minutes,
           coalesce(m.measured, 0) AS measured_minutes, coalesce(m.down, 0) AS down_minutes,
           CASE WHEN coalesce(m.measured, 0) > 0
                THEN (m.measured - m.down)::numeric / m.measured END AS availability,
           coalesce(b.base, 0) AS base_amount
    FROM eligible e
    LEFT JOIN measured m USING (deployment_id)
    LEFT JOIN base b USING (deployment_id)
), tiered AS (
    SELECT r.*, t.id AS tier_id, t.credit_share,
           r.base_amount * coalesce(t.credit_share, 0) AS credit_amount
    FROM rows r
    LEFT JOIN LATERAL (
        SELECT id, credit_share FROM billing.sla_credit_tiers
        WHERE r.availability < below_availability
        ORDER BY below_availability ASC LIMIT 1
    ) t ON true
)
INSERT INTO billing.sla_measurements (
    deployment_id, month, account_id, existed_minutes, excluded_minutes, eligible_minutes,
    measured_minutes, down_minutes, unmeasured_minutes, availability, tier_id, credit_share,
    base_amount, credit_amount, outcome, idempotency_key)
SELECT deployment_id, %(month)s, account_id, existed_minutes, existed_minutes - eligible_minutes,
       eligible_minutes, measured_minutes, down_minutes, greatest(0, eligible_minutes - measured_minutes),
       availability, tier_id, credit_share, base_amount,
       CASE WHEN tier_id IS NOT NULL AND measured_minutes > 0 THEN credit_amount ELSE 0 END,
       CASE WHEN measured_minutes = 0 THEN 'no_measurement'
            WHEN tier_id IS NULL THEN 'met'
            -- a credit that rounds (half-even) to zero micro-credits is nothing to post
            WHEN credit_amount <= 0.0000005 THEN 'no_base'
            ELSE 'credit' END,
       {sla_key_sql("deployment_id", "%(month_text)s")}
FROM tiered
ON CONFLICT (deployment_id, month) DO NOTHING
"""

_TO_CREDIT = """
SELECT deployment_id, account_id, existed_minutes, excluded_minutes, eligible_minutes, measured_minutes,
       down_minutes, unmeasured_minutes, availability, tier_id, credit_share, base_amount, credit_amount,
       idempotency_key
FROM billing.sla_measurements
WHERE month = %(month)s AND outcome = 'credit'
ORDER BY account_id, deployment_id
"""


@dataclass
class SlaResult:
    month: date
    measured: int = 0  # deployments measured by this run
    credits_posted: int = 0  # sla_credit entries written by this run
    credits_already_posted: int = 0
    credited_amount: Decimal = Decimal("0")
    outcomes: dict[str, int] = field(default_factory=dict)  # every measurement of the month, by outcome
    no_measurement: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "month": month_text(self.month),
            "measured": self.measured,
            "credits_posted": self.credits_posted,
            "credits_already_posted": self.credits_already_posted,
            "credited_amount": f"{self.credited_amount:.6f}",
            "outcomes": self.outcomes,
            "no_measurement": self.no_measurement,
        }


def _reference(row: tuple, month: date) -> dict:
    (
        dep,
        account,
        existed,
        excluded,
        eligible,
        measured,
        down,
        unmeasured,
        availability,
        tier,
        share,
        base,
        _credit,
        _key,
    ) = row
    return {
        "month": month_text(month),
        "deployment_id": dep,
        "account_id": account,
        "existed_minutes": existed,
        "excluded_minutes": excluded,
        "eligible_minutes": eligible,
        "measured_minutes": measured,
        "down_minutes": down,
        "unmeasured_minutes": unmeasured,
        "availability": f"{availability:.6f}",
        "tier": tier,
        "credit_share": f"{share:.6f}",
        "base": str(base),
    }


def credit_sla(conn: psycopg.Connection, month: date) -> SlaResult:
    """Measure the month's availability and post its SLA credits, exactly once (see the module)."""
    start, end = month_bounds(month)
    params = {"start": start, "end": end, "month": month, "month_text": month_text(month)}
    result = SlaResult(month)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (SLA_LOCK,))
        # JIT compiling these one-off statements costs more than it saves (seconds, under load).
        conn.execute("SET LOCAL jit = off")
        # Before the first hourly cycle built the dbt models there is no priced usage at all: no
        # consumption was billed, so none is credited (the base is empty, not an error).
        priced = conn.execute("SELECT to_regclass(%s)", (PRICED_USAGE,)).fetchone()[0] is not None
        measure = _MEASURE.replace("{priced_usage}", PRICED_USAGE if priced else NO_PRICED_USAGE)
        result.measured = conn.execute(measure, params, prepare=False).rowcount
        rows = conn.execute(_TO_CREDIT, params).fetchall()
        entries = [
            Entry(
                r[1],
                "sla_credit",
                round_credits(r[12]),
                r[13],
                reference=_reference(r, month),
                reason=f"SLA credit {month_text(month)}: {r[0]} availability {r[8] * 100:.3f}%",
            )
            for r in rows
        ]
        for posted in post_entries(conn, entries):
            if posted.created:
                result.credits_posted += 1
                result.credited_amount += posted.amount
            else:
                result.credits_already_posted += 1
        result.outcomes = dict(
            conn.execute(
                "SELECT outcome, count(*) FROM billing.sla_measurements WHERE month = %s GROUP BY 1 ORDER BY 1",
                (month,),
            ).fetchall()
        )
        result.no_measurement = [
            r[0]
            for r in conn.execute(
                "SELECT deployment_id FROM billing.sla_measurements WHERE month = %s AND outcome = 'no_measurement' "
                "ORDER BY deployment_id LIMIT 50",
                (month,),
            ).fetchall()
        ]
    return result
