"""Bytes on disk per row (heap + indexes) of the tables that grow every hour, for docs/scaling.md.

Usage: .venv/bin/python deploy/measure_row_bytes.py [--rows 100000]

Creates the scratch database ``satusky_rowbytes`` on BILLING_BENCH_SERVER (default
127.0.0.1:5432), applies the migrations, fills each table with ``--rows`` rows shaped like
production rows (identifiers, hashes and JSON references of realistic length) and prints
``pg_total_relation_size / rows``. Triggers are bypassed (``session_replication_role``) because
only the storage is measured, not the ledger's rules. The database is dropped afterwards.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from billing_pipeline.db.connection import make_conninfo_url
from billing_pipeline.db.migrate import upgrade

DB = "satusky_rowbytes"

# One statement per table; %(n)s rows spread over hours so the primary keys stay unique.
FILLS = {
    "billing.metric_container_hours": """
        INSERT INTO billing.metric_container_hours
        SELECT timestamptz '2026-11-01' + (i / 3000) * interval '1 hour', 'ns-' || lpad((i %% 3000 / 3)::text, 6, '0'),
               'web-' || md5(i::text)::varchar(10) || '-' || substr(md5((i*7)::text), 1, 5), 'app',
               'node-' || (i %% 300), 'dep-' || lpad((i %% 3000 / 3)::text, 6, '0'), 'acct-' || lpad((i %% 600)::text, 5, '0'),
               'label', 60, 0.412345678901, 0.5, 0.734567890123, 1.0, 0, NULL
        FROM generate_series(0, %(n)s - 1) AS i""",
    "billing.probe_deployment_hours": """
        INSERT INTO billing.probe_deployment_hours
        SELECT timestamptz '2026-11-01' + (i / 1000) * interval '1 hour', 'dep-' || lpad((i %% 1000)::text, 6, '0'),
               60, 0, repeat('u', 60)
        FROM generate_series(0, %(n)s - 1) AS i""",
    "billing.machine_rental_hours": """
        INSERT INTO billing.machine_rental_hours
        SELECT timestamptz '2026-11-01' + (i / 200) * interval '1 hour', 'mu-' || lpad((i %% 200)::text, 8, '0'),
               'acct-' || lpad((i %% 200)::text, 5, '0'), 'machine-' || (i %% 200), 'gpu.a100.1', 'node-' || (i %% 200),
               3600, 1, true, now()
        FROM generate_series(0, %(n)s - 1) AS i""",
    "billing.credit_transactions": """
        INSERT INTO billing.credit_transactions
            (account_id, account_seq, type, amount, balance_after, idempotency_key, reference, prev_hash, entry_hash, key_id)
        SELECT 'acct-' || lpad((i %% 2000)::text, 5, '0'), i / 2000 + 1, 'usage_deduction', -1.234567, 1000.000000,
               'usage:acct-' || lpad((i %% 2000)::text, 5, '0') || ':2026-11-01T' || lpad((i / 4000 %% 24)::text, 2, '0')
                 || ':00:00+00:00:' || (CASE WHEN i %% 2 = 0 THEN 'workload_consumption' ELSE 'machine_rental' END) || ':' || i,
               jsonb_build_object('hour', '2026-11-01T10:00:00+00:00', 'usage_kind', 'workload_consumption',
                                  'account_id', 'acct-' || lpad((i %% 2000)::text, 5, '0'), 'owed', '1.234567'),
               encode(sha256(i::text::bytea), 'hex'), encode(sha256((i + 1)::text::bytea), 'hex'), 'k-3f2a9c1d'
        FROM generate_series(0, %(n)s - 1) AS i""",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    rows = parser.parse_args().rows
    host, _, port = os.environ.get("BILLING_BENCH_SERVER", "127.0.0.1:5432").partition(":")
    admin = make_conninfo_url(host=host, port=int(port or 5432), dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB)))
    url = make_conninfo_url(host=host, port=int(port or 5432), dbname=DB)
    upgrade(url)
    try:
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("SET session_replication_role = replica")
            for table, fill in FILLS.items():
                c.execute(fill, {"n": rows})
                c.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.SQL(table)))
                total = c.execute("SELECT pg_total_relation_size(%s::regclass)", (table,)).fetchone()[0]
                print(f"{table}: {total / rows:.0f} bytes/row ({total:,} bytes for {rows:,} rows, indexes included)")
    finally:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB)))


if __name__ == "__main__":
    main()
