"""Payments: Stripe auto top-up."""
