"""The credit grant tables in the asset lineage (docs/rules/credit-reports.md).

``billing.grants``, ``grant_draws``, ``grant_balances`` and ``grant_debts`` are written by the
ledger's posting, in the transaction of the entries that open, draw on or expire a grant: they
are not materialized on their own. Each is an asset spec downstream of the ledger
(``ledger/credit_transactions``), so that the dbt sources that read them (keys
``["ledger", "<table>"]``, ``_ledger__sources.yml``) show where their rows come from.
"""

import dagster as dg

from billing_pipeline.core.asset_keys import LEDGER
from billing_pipeline.core.ownership import BILLING_OWNERS

GRANT_TABLES = {
    "grants": "Credit grants: the terms of every credit-adding ledger entry (kind, priority, expiry). Append-only.",
    "grant_draws": "What each debit, expiry or reversal drew from (or gave back to) each grant. Append-only.",
    "grant_balances": "Per grant: drawn, expired, remaining (a cache of the draws).",
    "grant_debts": "Debits not covered by grants, outstanding until the next grant pays them (a cache).",
}

grant_table_specs = [
    dg.AssetSpec(
        key=dg.AssetKey(["ledger", table]),
        deps=[LEDGER],
        description=description,
        group_name="ledger",
        kinds={"postgres"},
        owners=BILLING_OWNERS,
        metadata={"table": f"billing.{table}", "written_by": "billing_pipeline.ledger.posting, with the entries"},
    )
    for table, description in GRANT_TABLES.items()
]
