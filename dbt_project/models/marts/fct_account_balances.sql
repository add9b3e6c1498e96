-- One row per account at the as_of clock (var as_of, else the end of the partition window,
-- else now()): ledger balance, priced usage the ledger has not deducted yet, burn rate over the
-- previous 24 hours, runway at that rate, lifecycle state.

with accounts as (
    select * from {{ ref('stg_platform__accounts') }}
),

ledger_totals as (
    -- Whole days of the ledger, summed (int_ledger_daily), not every entry ever posted.
    select
        account_id,
        sum(amount) as ledger_balance,
        sum(usage_deducted) as usage_deducted,
        max(last_transaction_at) as last_transaction_at
    from {{ ref('int_ledger_daily') }}
    group by account_id
),

charged_totals as (
    -- Whole months of charges, summed (int_usage_charges_monthly), not every day.
    select
        account_id,
        sum(amount) as usage_charged
    from {{ ref('int_usage_charges_monthly') }}
    group by account_id
),

last_24_hours as (
    select
        account_id,
        sum(amount) as amount,
        bool_or(is_estimate) as has_estimate
    from {{ ref('fct_usage_charges') }}
    where
        hour >= {{ as_of_timestamp() }} - interval '24 hours'
        and hour < {{ as_of_timestamp() }}
    group by account_id
),

states as (
    select * from {{ ref('int_account_lifecycle_states') }}
),

combined as (
    select
        accounts.account_id,
        accounts.low_balance_threshold,
        coalesce(ledger_totals.ledger_balance, 0) as ledger_balance,
        coalesce(charged_totals.usage_charged, 0) - coalesce(ledger_totals.usage_deducted, 0)
            as usage_not_yet_deducted,
        {{ round_half_even('coalesce(last_24_hours.amount, 0) / 24', 6) }} as burn_rate_per_hour,
        coalesce(last_24_hours.has_estimate, false) as burn_rate_includes_estimates,
        states.lifecycle_state,
        states.lifecycle_state_source,
        ledger_totals.last_transaction_at
    from accounts
    left join ledger_totals on accounts.account_id = ledger_totals.account_id
    left join charged_totals on accounts.account_id = charged_totals.account_id
    left join last_24_hours on accounts.account_id = last_24_hours.account_id
    left join states on accounts.account_id = states.account_id
)

select
    account_id,
    ledger_balance,
    usage_not_yet_deducted,
    ledger_balance - usage_not_yet_deducted as available_balance,
    burn_rate_per_hour,
    burn_rate_includes_estimates,
    -- The one runway formula (migration 0010), also what the short-runway alerts call.
    billing.runway_hours(ledger_balance - usage_not_yet_deducted, burn_rate_per_hour) as runway_hours,
    low_balance_threshold,
    lifecycle_state,
    lifecycle_state_source,
    last_transaction_at,
    {{ as_of_timestamp() }} as as_of
from combined
