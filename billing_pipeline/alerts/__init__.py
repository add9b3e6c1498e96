"""Alerts: low-balance and short-runway notifications by email and signed webhook."""
