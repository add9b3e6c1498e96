"""Dagster definitions of the ledger domain (assets, jobs, sensors, schedules)."""

import dagster as dg

defs = dg.Definitions()
