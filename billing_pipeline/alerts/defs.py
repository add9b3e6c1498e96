"""Dagster definitions of the alerts domain (assets, jobs, sensors, schedules)."""

import dagster as dg

defs = dg.Definitions()
