"""Ingestion: Prometheus pod metrics and machine rentals, one UTC hour at a time."""
