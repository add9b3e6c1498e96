"""Satusky prepaid-credit billing pipeline.

Prometheus pod metrics and PostgreSQL machine rentals are ingested hour by hour (``ingestion``),
priced and reconciled by dbt (``transform``), and acted upon by jobs that post to the
append-only credit ledger (``ledger``), alert (``alerts``), top up through Stripe (``payments``),
enforce the account lifecycle on the cluster (``lifecycle``) and invoice (``invoicing``).
"""

import warnings

# Dagster marks some parameters we rely on (backfill_policy, owners ...) as beta or preview and
# warns at every import; one line per decorator on every command is noise, not news. The pinned
# version (uv.lock) is what the tests exercise.
warnings.filterwarnings("ignore", message=r".*is currently in (beta|preview)", module=r"dagster.*")
warnings.filterwarnings("ignore", message=r".*is currently in (beta|preview)")
