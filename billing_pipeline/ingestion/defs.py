"""Dagster definitions of the ingestion domain (assets, jobs, sensors, schedules)."""

import dagster as dg

defs = dg.Definitions()
