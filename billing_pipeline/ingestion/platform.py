"""The platform's tables as external Dagster assets (the platform writes them, we read them).

Keys ``["platform", "<table>"]``, group ``platform``. dbt sources map onto exactly these keys.
"""

import dagster as dg

from billing_pipeline.core.ownership import BILLING_OWNERS

PLATFORM_TABLES = {
    "accounts": "Customer accounts: thresholds, grace period, volume policy, auto top-up settings.",
    "deployments": "Kubernetes Deployments the platform created, with their account (namespace, name).",
    "domains": "Hostnames routed to deployments, with their routing status.",
    "machine_usages": "Machine rentals: which account rented which machine/node, from when to when.",
    "pricing_configs": "Unit prices per resource (and machine type) with their validity windows.",
}


def platform_key(table: str) -> dg.AssetKey:
    return dg.AssetKey(["platform", table])


platform_specs = [
    dg.AssetSpec(
        key=platform_key(table),
        description=description,
        group_name="platform",
        kinds={"postgres"},
        owners=BILLING_OWNERS,
        metadata={"table": f"billing.{table}", "written_by": "the Satusky platform"},
    )
    for table, description in PLATFORM_TABLES.items()
]
