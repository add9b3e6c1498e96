"""Dagster definitions of the invoicing domain (assets, jobs, sensors, schedules)."""

import dagster as dg

defs = dg.Definitions()
