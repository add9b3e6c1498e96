"""The asset groups along the money path, in the order the lineage reads left to right
(transform/translator.py names the dbt stages): the one list the group-graph unit test and the
browser test both hold the definitions and the drawn graph to."""

MONEY_PATH = (
    "sources",
    "platform",
    "ingestion",
    "dbt_usage",
    "ledger",
    "payments",
    "lifecycle",
    "dbt_balances",
    "alerts",
    "invoicing",
    "dbt_invoicing",
)
