"""Satusky prepaid-credit billing pipeline.

Prometheus pod metrics and PostgreSQL machine rentals are ingested hour by hour (``ingestion``),
priced and reconciled by dbt (``transform``), and acted upon by jobs that post to the
append-only credit ledger (``ledger``), alert (``alerts``), top up through Stripe (``payments``),
enforce the account lifecycle on the cluster (``lifecycle``) and invoice (``invoicing``).
"""
