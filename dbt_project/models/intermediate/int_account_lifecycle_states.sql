-- Lifecycle state per account (docs/rules/lifecycle.md): the state grace_period_job persisted
-- (billing.account_lifecycle: it alone knows deadlines and expiry), else, for an account the
-- lifecycle has not evaluated yet, the state its ledger balance and threshold imply, by the
-- lifecycle machine's own rule (macro lifecycle_state_for_balance, checked against machine.py).
with accounts as (
    select * from {{ ref('stg_platform__accounts') }}
),

balances as (
    -- Whole days of the ledger, summed (int_ledger_daily), not every entry ever posted.
    select
        account_id,
        sum(amount) as balance
    from {{ ref('int_ledger_daily') }}
    group by account_id
),

persisted as (
    select * from {{ ref('stg_lifecycle__account_lifecycle') }}
)

select
    accounts.account_id,
    coalesce(balances.balance, 0) as balance,
    coalesce(
        persisted.lifecycle_state,
        {{ lifecycle_state_for_balance('coalesce(balances.balance, 0)', 'accounts.low_balance_threshold') }}
    ) as lifecycle_state,
    case when persisted.account_id is null then 'derived_from_balance' else 'lifecycle' end as lifecycle_state_source
from accounts
left join balances on accounts.account_id = balances.account_id
left join persisted on accounts.account_id = persisted.account_id
