-- Lifecycle state per account (contract section 6), derived from the ledger balance and the
-- account's threshold. Stand-in until billing.account_lifecycle (issue 6) persists the state
-- with grace deadlines and expiry: then select its `state` here instead; nothing downstream
-- changes.
with accounts as (
    select * from {{ ref('stg_platform__accounts') }}
),

balances as (
    select account_id, sum(amount) as balance
    from {{ ref('stg_ledger__credit_transactions') }}
    group by account_id
)

select
    accounts.account_id,
    coalesce(balances.balance, 0) as balance,
    case
        when coalesce(balances.balance, 0) <= 0 then 'grace_period'
        when coalesce(balances.balance, 0) <= accounts.low_balance_threshold then 'low_balance'
        else 'healthy'
    end as lifecycle_state,
    'derived_from_balance'::text as lifecycle_state_source
from accounts
left join balances on accounts.account_id = balances.account_id
