"""Dagster definitions of the payments domain (assets, jobs, sensors, schedules)."""

import dagster as dg

defs = dg.Definitions()
