"""Dagster definitions of the lifecycle domain (assets, jobs, sensors, schedules)."""

import dagster as dg

defs = dg.Definitions()
