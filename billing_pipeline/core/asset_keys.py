"""The keys of the pipeline's own assets (dbt models take theirs from the manifest).

One module at the bottom of the tree, so a domain can name another domain's asset as a
dependency without importing that domain's Dagster definitions.
"""

import dagster as dg

# Sources the pipeline reads but does not write.
PROMETHEUS = dg.AssetKey(["prometheus", "cluster_metrics"])

# The money path, in the order the graph runs it.
LEDGER = dg.AssetKey(["ledger", "credit_transactions"])
GRANT_EXPIRY = dg.AssetKey(["ledger", "grant_expiry"])
AUTO_TOPUPS = dg.AssetKey(["payments", "auto_topups"])
BALANCE_ALERTS = dg.AssetKey(["alerts", "balance_alerts"])
ACCOUNT_LIFECYCLE = dg.AssetKey(["lifecycle", "account_lifecycle"])
NOTIFICATION_DELIVERIES = dg.AssetKey(["alerts", "notification_deliveries"])
