"""Invoicing: monthly invoices and SLA credits."""
