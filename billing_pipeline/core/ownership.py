"""Who owns what in the Dagster UI: one constant, used by every asset's ``owners=``."""

# A Dagster owner is an email or "team:<name>"; every billing asset belongs to the billing team.
BILLING_OWNER = "team:billing"
BILLING_OWNERS = [BILLING_OWNER]
