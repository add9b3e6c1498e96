"""The platform's tables as external Dagster assets (the platform writes them, we read them).

Keys ``["platform", "<table>"]``, group ``platform``. dbt sources map onto exactly these keys;
``sources.py`` observes them.
"""

import dagster as dg

PLATFORM_TABLES = {
    "accounts": "Customer accounts: thresholds, grace period, volume policy, auto top-up settings.",
    "deployments": "Kubernetes Deployments the platform created, with their account (namespace, name).",
    "domains": "Hostnames routed to deployments, with their routing status.",
    "machine_usages": "Machine rentals: which account rented which machine/node, from when to when.",
    "pricing_configs": "Unit prices per resource (and machine type) with their validity windows.",
}


def platform_key(table: str) -> dg.AssetKey:
    return dg.AssetKey(["platform", table])
