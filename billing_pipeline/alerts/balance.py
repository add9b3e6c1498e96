"""Low-balance and short-runway warnings, once per crossing, with a recovery notice.

A *crossing* opens when an account enters a warning condition and closes when it leaves it:

* ``low_balance``: opens when 0 < balance <= ``low_balance_threshold`` (docs/rules/lifecycle.md);
  closes when the balance is above the threshold again. An account that falls to 0 or below
  keeps its crossing open (the grace period has its own notices), so no second warning is sent
  on the way back up through the low-balance band.
* ``short_runway``: opens when the balance is positive and lasts under 24 hours at the current
  burn rate (``fct_account_balances.burn_rate_per_hour``, usage of the last 24 hours), by the one
  runway formula ``billing.runway_hours`` (migration 0010) that the balances mart uses too;
  closes when the runway is 24 hours or more (or nothing is being used) with a positive balance.

The balance is the ledger's, read live (``billing.credits``), since deduction may have posted
after the balances mart was built. Opening and closing are one set-based statement each; the
notification is queued in the same transaction under a key derived from the crossing
(``<kind>:<account>:<crossing_no>`` and ``<kind>_recovered:...``), and a partial unique index
allows one open crossing per account and kind, so concurrent runs cannot warn twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg

from billing_pipeline.core.clock import system_now
from billing_pipeline.lifecycle.machine import State, state_sql
from billing_pipeline.notifications.outbox import ENQUEUE_SET

RUNWAY_WARNING_HOURS = 24
BALANCES_MART = "analytics.fct_account_balances"

# The balance -> state rule is the lifecycle machine's (one owner); the low-balance crossing opens
# when it says low_balance and closes when it says healthy (at or below zero the grace period has
# its own notices, so the crossing stays open).
_STATE = (
    """
    SELECT a.id AS account_id, coalesce(c.balance, 0) AS balance, a.low_balance_threshold AS threshold,
           """
    + state_sql("coalesce(c.balance, 0)", "a.low_balance_threshold")
    + """ AS balance_state,
           {burn} AS burn_rate
    FROM billing.accounts a
    LEFT JOIN billing.credits c ON c.account_id = a.id
    {burn_join}
"""
)

_OPEN = (
    """
WITH state AS ({state}),
conditions AS (
    SELECT s.*, k.kind,
           billing.runway_hours(s.balance, s.burn_rate) AS runway_hours,
           CASE k.kind
               WHEN 'low_balance' THEN s.balance_state = '"""
    + State.LOW_BALANCE.value
    + """'
               ELSE s.balance > 0 AND billing.runway_hours(s.balance, s.burn_rate) < %(runway)s
           END AS entered
    FROM state s CROSS JOIN (VALUES ('low_balance'), ('short_runway')) AS k (kind)
),
opened AS (
    INSERT INTO billing.balance_alert_crossings
        (account_id, kind, crossing_no, opened_at, balance, threshold, runway_hours)
    SELECT c.account_id, c.kind,
           coalesce((SELECT max(x.crossing_no) FROM billing.balance_alert_crossings x
                     WHERE x.account_id = c.account_id AND x.kind = c.kind), 0) + 1,
           %(now)s, c.balance, c.threshold, c.runway_hours
    FROM conditions c
    WHERE c.entered
      AND NOT EXISTS (SELECT 1 FROM billing.balance_alert_crossings x
                      WHERE x.account_id = c.account_id AND x.kind = c.kind AND x.recovered_at IS NULL)
    ON CONFLICT DO NOTHING
    RETURNING *
)
SELECT account_id, kind, crossing_no, balance, threshold, runway_hours FROM opened
"""
)

_CLOSE = (
    """
WITH state AS ({state}),
recovered AS (
    UPDATE billing.balance_alert_crossings x
    SET recovered_at = %(now)s, recovered_balance = s.balance
    FROM state s
    WHERE x.account_id = s.account_id AND x.recovered_at IS NULL
      AND CASE x.kind
              WHEN 'low_balance' THEN s.balance_state = '"""
    + State.HEALTHY.value
    + """'
              ELSE s.balance > 0 AND coalesce(billing.runway_hours(s.balance, s.burn_rate) >= %(runway)s, true)
          END
    RETURNING x.account_id, x.kind, x.crossing_no, s.balance, s.threshold,
              billing.runway_hours(s.balance, s.burn_rate) AS runway_hours
)
SELECT * FROM recovered
"""
)

# Notification text, built in SQL from the crossing rows (one statement for every account).
_MESSAGES = """
SELECT r.account_id,
       r.kind || CASE WHEN %(recovery)s THEN '_recovered' ELSE '' END AS kind,
       r.kind || CASE WHEN %(recovery)s THEN '_recovered' ELSE '' END || ':' || r.account_id || ':' || r.crossing_no
           AS dedupe_key,
       CASE
           WHEN %(recovery)s AND r.kind = 'low_balance' THEN 'Satusky: balance restored on account ' || r.account_id
           WHEN %(recovery)s THEN 'Satusky: credits last more than a day again on account ' || r.account_id
           WHEN r.kind = 'low_balance' THEN 'Satusky: low balance on account ' || r.account_id
           ELSE 'Satusky: credits run out within 24 hours on account ' || r.account_id
       END AS subject,
       CASE
           WHEN %(recovery)s AND r.kind = 'low_balance' THEN
               'The balance of account ' || r.account_id || ' is ' || r.balance::text ||
               ' credits, above the low-balance threshold of ' || r.threshold::text || ' credits again.'
           WHEN %(recovery)s THEN
               'At the current usage the credits of account ' || r.account_id || ' last ' ||
               coalesce(r.runway_hours::text || ' hours', 'indefinitely (no usage in the last 24 hours)') ||
               ' (balance ' || r.balance::text || ' credits).'
           WHEN r.kind = 'low_balance' THEN
               'The balance of account ' || r.account_id || ' is ' || r.balance::text ||
               ' credits, at or below the low-balance threshold of ' || r.threshold::text || ' credits. ' ||
               'When it reaches zero, routing to its deployments stops and a grace period begins; ' ||
               'add credits to avoid it.'
           ELSE
               'At the usage of the last 24 hours, the ' || r.balance::text || ' credits of account ' ||
               r.account_id || ' last about ' || r.runway_hours::text || ' hours. When the balance reaches ' ||
               'zero, routing stops and a grace period begins; add credits to avoid it.'
       END AS body,
       jsonb_build_object(
           'event', r.kind || CASE WHEN %(recovery)s THEN '_recovered' ELSE '' END,
           'account_id', r.account_id, 'crossing_no', r.crossing_no,
           'balance', r.balance::text, 'threshold', r.threshold::text,
           'runway_hours', r.runway_hours::text, 'at', %(now)s::timestamptz
       ) AS payload
FROM (SELECT * FROM unnest(%(accounts)s::text[], %(kinds)s::text[], %(nos)s::int[], %(balances)s::numeric[],
                           %(thresholds)s::numeric[], %(runways)s::numeric[])
      AS t (account_id, kind, crossing_no, balance, threshold, runway_hours)) r
"""


@dataclass
class AlertResult:
    opened: list[tuple[str, str, int]]
    recovered: list[tuple[str, str, int]]
    queued: int
    runway_source: str

    def summary(self) -> str:
        return (
            f"balance alerts: {len(self.opened)} crossing(s) opened, {len(self.recovered)} recovered, "
            f"{self.queued} notification(s) queued (burn rate from {self.runway_source})"
        )


def _state_sql(conn: psycopg.Connection) -> tuple[str, str]:
    has_mart = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (BALANCES_MART,)).fetchone()[0]
    if has_mart:
        return (
            _STATE.format(burn="b.burn_rate_per_hour", burn_join=f"LEFT JOIN {BALANCES_MART} b ON b.account_id = a.id"),
            BALANCES_MART,
        )
    # Without the mart (dbt not built yet) there is no burn rate: low-balance warnings only.
    return _STATE.format(burn="NULL::numeric", burn_join=""), "nowhere (fct_account_balances not built)"


def _queue(conn: psycopg.Connection, rows: list[tuple], *, recovery: bool, now: datetime) -> int:
    if not rows:
        return 0
    cols = list(zip(*rows))
    return conn.execute(
        ENQUEUE_SET.format(select=_MESSAGES),
        {
            "recovery": recovery,
            "now": now,
            "accounts": list(cols[0]),
            "kinds": list(cols[1]),
            "nos": list(cols[2]),
            "balances": list(cols[3]),
            "thresholds": list(cols[4]),
            "runways": list(cols[5]),
        },
    ).fetchone()[0]


def evaluate_balance_alerts(conn: psycopg.Connection, now: datetime | None = None) -> AlertResult:
    """Open and close crossings for every account and queue their notices, in one transaction."""
    now = (now or system_now()).astimezone(UTC)
    with conn.transaction():
        state, source = _state_sql(conn)
        params = {"now": now, "runway": RUNWAY_WARNING_HOURS}
        closed = conn.execute(_CLOSE.format(state=state), params).fetchall()
        opened = conn.execute(_OPEN.format(state=state), params).fetchall()
        queued = _queue(conn, closed, recovery=True, now=now) + _queue(conn, opened, recovery=False, now=now)
    return AlertResult([r[:3] for r in opened], [r[:3] for r in closed], queued, source)
