"""Transform: the dbt project (priced usage, reconciliation, balances, invoice lines) as Dagster assets."""
