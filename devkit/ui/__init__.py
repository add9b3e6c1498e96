"""``scripts/ui``: the Dagster UI on the demo's instance, with the services its jobs need."""
