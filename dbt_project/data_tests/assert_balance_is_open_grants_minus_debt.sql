-- docs/rules/credit-reports.md: an account's balance = the remaining of its grants - its debt. The balance is the
-- balance_after of the account's newest ledger entry (the ledger's running sum, which
-- `billing verify` holds to the entries), read through the (account_id, account_seq) key rather
-- than summing the whole ledger every hour. Checked for the accounts whose ledger has not moved
-- since fct_grant_balances was built (a posting after the build moves balance, grants and debt
-- together; the next build checks it). Rows returned are accounts that break it.
-- Dagster shows it as an asset check of fct_grant_balances (it reads several models, so
-- dagster-dbt needs to be told which one it checks).
{{ config(meta={'dagster': {'ref': {'name': 'fct_grant_balances'}}}) }}

with accounts as (
    select * from {{ ref('stg_platform__accounts') }}
),

grant_totals as (
    select
        account_id,
        max(account_last_entry_id) as account_last_entry_id,
        sum(remaining) as remaining
    from {{ ref('fct_grant_balances') }}
    group by account_id
),

debts as (
    select
        account_id,
        sum(outstanding) as debt
    from {{ ref('stg_ledger__grant_debts') }}
    group by account_id
),

heads as (
    select
        accounts.account_id,
        head.transaction_id as last_entry_id,
        head.balance_after as balance
    from accounts
    cross join lateral (
        select
            ledger.transaction_id,
            ledger.balance_after
        from {{ ref('stg_ledger__credit_transactions') }} as ledger
        where ledger.account_id = accounts.account_id
        order by ledger.account_seq desc
        limit 1
    ) as head
)

select
    heads.account_id,
    heads.balance,
    coalesce(grant_totals.remaining, 0) as remaining,
    coalesce(debts.debt, 0) as debt
from heads
left join grant_totals on heads.account_id = grant_totals.account_id
left join debts on heads.account_id = debts.account_id
where
    heads.balance <> coalesce(grant_totals.remaining, 0) - coalesce(debts.debt, 0)
    and (
        grant_totals.account_last_entry_id = heads.last_entry_id
        or (
            grant_totals.account_id is null
            and not exists (
                select 1 from {{ ref('stg_ledger__grants') }} as g
                where g.account_id = heads.account_id
            )
        )
    )
