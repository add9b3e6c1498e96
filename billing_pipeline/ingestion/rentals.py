"""Machine rentals (``billing.machine_usages``) sliced into UTC hours, set-based in SQL.

``slice_rental_hour(conn, hour, clock)`` (one transaction):

1. quarantines bad rows (null account/machine/type/node/start, an account that does not exist,
   ``ended_at`` before ``started_at``) into ``billing.quarantined_rows`` with a reason a person
   can act on, and marks earlier quarantine entries resolved once their row is fixed;
2. replaces the hour's ``billing.machine_rental_hours``: for each valid rental overlapping the
   hour, the seconds of ``[started_at, coalesce(ended_at, clock))`` inside ``[hour, hour+1h)``
   (exact ``numeric``), machine-hours = seconds / 3600; rentals still running at ``clock``
   count up to the clock (``is_ongoing``), nothing after the clock is counted;
3. records the slicing (``billing.machine_rental_slicings``: hour, clock, wall time).

Corrections. ``stale_rental_hours(conn, clock)`` lists exactly the sliced hours that no longer
match ``machine_usages``:

* (a) hours holding a slice whose rental changed since (``updated_at`` differs from the slice's
  ``source_updated_at``), was deleted, or has become invalid;
* (b) sliced hours that a rental updated after that slicing now touches (a new rental, or one
  whose end moved later) but that hold no slice of it;
* (c) provisional hours, sliced before they were over, once the clock has moved past that.

Each stale hour is re-sliced by re-materialising that hour's partition: the sensor
``machine_rental_corrections_sensor`` requests those runs, and ``billing run`` re-slices them
before its own hours. Re-slicing an unchanged hour yields identical rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg

from billing_pipeline.core.hours import HOUR

_PROBLEMS = """
SELECT u.id, v.reason, to_jsonb(u) AS row_data
FROM billing.machine_usages u
CROSS JOIN LATERAL (VALUES
    (CASE WHEN u.account_id IS NULL THEN
        'account_id is null: nobody can be billed for this rental; set the account in billing.machine_usages' END),
    (CASE WHEN u.account_id IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM billing.accounts a WHERE a.id = u.account_id) THEN
        'account_id names no row of billing.accounts: create the account or correct the rental' END),
    (CASE WHEN u.machine_id IS NULL THEN 'machine_id is null: the rented machine is unknown' END),
    (CASE WHEN u.machine_type IS NULL THEN 'machine_type is null: no machine price can apply' END),
    (CASE WHEN u.node_name IS NULL THEN
        'node_name is null: the rental cannot be matched to the Kubernetes node it backs' END),
    (CASE WHEN u.started_at IS NULL THEN 'started_at is null: the rental has no start' END),
    (CASE WHEN u.ended_at < u.started_at THEN
        'ended_at is before started_at: the rental would last a negative time; correct its dates' END)
) AS v(reason)
WHERE v.reason IS NOT NULL
"""

_QUARANTINE = [
    "SET LOCAL timezone = 'UTC'",
    f"CREATE TEMP TABLE stg_bad_rentals ON COMMIT DROP AS {_PROBLEMS}",
    """
    INSERT INTO billing.quarantined_rows (source_table, source_id, reason, row_data)
    SELECT 'machine_usages', id, reason, row_data FROM stg_bad_rentals
    ON CONFLICT (source_table, source_id, reason) DO UPDATE
        SET last_seen_at = now(), row_data = EXCLUDED.row_data, resolved_at = NULL
    """,
    """
    UPDATE billing.quarantined_rows q SET resolved_at = now()
    WHERE q.source_table = 'machine_usages' AND q.resolved_at IS NULL
      AND NOT EXISTS (SELECT 1 FROM stg_bad_rentals b WHERE b.id = q.source_id AND b.reason = q.reason)
    """,
]

_SLICE = [
    "DELETE FROM billing.machine_rental_hours WHERE hour = %(hour)s",
    """
    INSERT INTO billing.machine_rental_hours (
        hour, machine_usage_id, account_id, machine_id, machine_type, node_name,
        rented_seconds, machine_hours, is_ongoing, source_updated_at)
    SELECT %(hour)s, u.id, u.account_id, u.machine_id, u.machine_type, u.node_name,
           s.seconds, s.seconds / 3600, u.ended_at IS NULL OR u.ended_at > %(clock)s, u.updated_at
    FROM billing.machine_usages u
    CROSS JOIN LATERAL (
        SELECT extract(epoch FROM least(u.ended_at, %(clock)s, %(hour_end)s) - greatest(u.started_at, %(hour)s))
               AS seconds
    ) s
    WHERE u.started_at < %(hour_end)s
      AND u.started_at < %(clock)s
      AND (u.ended_at IS NULL OR u.ended_at > %(hour)s)
      AND s.seconds > 0
      AND NOT EXISTS (SELECT 1 FROM stg_bad_rentals b WHERE b.id = u.id)
    """,
    """
    INSERT INTO billing.machine_rental_slicings (hour, clock, sliced_at, rentals)
    SELECT %(hour)s, %(clock)s, clock_timestamp(), count(*)
    FROM billing.machine_rental_hours WHERE hour = %(hour)s
    ON CONFLICT (hour) DO UPDATE
        SET clock = EXCLUDED.clock, sliced_at = EXCLUDED.sliced_at, rentals = EXCLUDED.rentals
    """,
]

_STALE = f"""
WITH bad AS ({_PROBLEMS}),
valid AS (
    SELECT u.* FROM billing.machine_usages u WHERE NOT EXISTS (SELECT 1 FROM bad b WHERE b.id = u.id)
),
stale AS (
    SELECT r.hour
    FROM billing.machine_rental_hours r
    LEFT JOIN valid u ON u.id = r.machine_usage_id
    WHERE u.id IS NULL OR u.updated_at IS DISTINCT FROM r.source_updated_at
    UNION
    SELECT s.hour
    FROM valid u
    CROSS JOIN LATERAL generate_series(
        date_trunc('hour', u.started_at, 'UTC'),
        least(u.ended_at, %(clock)s) - interval '1 microsecond',
        interval '1 hour') AS g(hour)
    JOIN billing.machine_rental_slicings s ON s.hour = g.hour AND u.updated_at > s.sliced_at
    WHERE u.updated_at > (SELECT min(sliced_at) FROM billing.machine_rental_slicings)
      AND NOT EXISTS (SELECT 1 FROM billing.machine_rental_hours r
                      WHERE r.hour = g.hour AND r.machine_usage_id = u.id)
    UNION
    SELECT s.hour FROM billing.machine_rental_slicings s
    WHERE s.clock < s.hour + interval '1 hour' AND s.clock < %(clock)s
)
SELECT hour FROM stale WHERE hour < %(clock)s ORDER BY hour
"""


@dataclass(frozen=True)
class RentalHourSummary:
    hour: datetime
    rentals: int
    machine_hours: str  # exact decimal as text
    ongoing: int
    quarantined_unresolved: int
    quarantined_new: int


def slice_rental_hour(conn: psycopg.Connection, hour: datetime, clock: datetime) -> RentalHourSummary:
    """Quarantine bad rentals and replace the hour's machine-hour slices (one transaction)."""
    params = {"hour": hour, "hour_end": hour + HOUR, "clock": clock}
    with conn.transaction(), conn.cursor() as cur:
        for statement in _QUARANTINE:
            cur.execute(statement)
        new = cur.execute(
            "SELECT count(*) FROM billing.quarantined_rows WHERE source_table = 'machine_usages' "
            "AND resolved_at IS NULL AND first_seen_at = now()"
        ).fetchone()[0]
        for statement in _SLICE:
            cur.execute(statement, params)
        rentals, hours, ongoing = cur.execute(
            "SELECT count(*), coalesce(sum(machine_hours), 0), count(*) FILTER (WHERE is_ongoing) "
            "FROM billing.machine_rental_hours WHERE hour = %(hour)s",
            params,
        ).fetchone()
        unresolved = cur.execute(
            "SELECT count(*) FROM billing.quarantined_rows WHERE source_table = 'machine_usages' AND resolved_at IS NULL"
        ).fetchone()[0]
    return RentalHourSummary(hour, rentals, str(hours), ongoing, unresolved, new)


def stale_rental_hours(conn: psycopg.Connection, clock: datetime) -> list[datetime]:
    """The sliced hours (before ``clock``) whose slices no longer match ``machine_usages``."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SET LOCAL timezone = 'UTC'")
        rows = cur.execute(_STALE, {"clock": clock}).fetchall()
    return [r[0].astimezone(UTC) for r in rows]


def quarantined_rentals(conn: psycopg.Connection) -> list[dict]:
    """Unresolved quarantine entries for machine_usages, oldest first."""
    rows = conn.execute(
        "SELECT source_id, reason, row_data, first_seen_at FROM billing.quarantined_rows "
        "WHERE source_table = 'machine_usages' AND resolved_at IS NULL ORDER BY first_seen_at, source_id"
    ).fetchall()
    return [{"id": r[0], "reason": r[1], "row": r[2], "first_seen_at": r[3]} for r in rows]
