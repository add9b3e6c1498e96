"""Who owns the pipeline's assets, as the Dagster UI shows it."""

BILLING_OWNER = "team:billing"
BILLING_OWNERS = [BILLING_OWNER]
