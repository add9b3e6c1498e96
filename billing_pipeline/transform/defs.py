"""Dagster definitions of the transform domain (assets, jobs, sensors, schedules)."""

import dagster as dg

defs = dg.Definitions()
