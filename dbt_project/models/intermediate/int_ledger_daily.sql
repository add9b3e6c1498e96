{#- The ledger summed per account and UTC day of entry: what fct_account_balances adds up,
    instead of reading every entry ever posted, every hour (2 s at a year of history on 2,000
    accounts, and growing with it). The ledger is append-only, so a day once past never changes:
    each build removes the last two days present (an entry committed just after midnight with an
    earlier created_at still lands in its day) and sums every entry since, through the index on
    created_at (macros/daily_rollups.sql: rollup_window_start). A full refresh sums
    everything. -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        pre_hook="{% if is_incremental() %}delete from {{ this }} where entry_day >= {{ rollup_window_start(this, 'entry_day') }}{% else %}select 1 /* full build */{% endif %}",
        indexes=[{'columns': ['entry_day']}, {'columns': ['account_id', 'entry_day'], 'unique': True}],
    )
}}

with ledger as (
    select * from {{ ref('stg_ledger__credit_transactions') }}
    {% if is_incremental() -%}
    where created_at >= {{ rollup_window_start(this, 'entry_day') }}
    {%- endif %}
)

select
    account_id,
    date_trunc('day', created_at, 'UTC') as entry_day,
    sum(amount) as amount,
    -- Deducted usage, net of reversals: the entries that settle a usage hour.
    coalesce(-sum(amount) filter (where usage_hour is not null), 0) as usage_deducted,
    count(*) as entries,
    max(created_at) as last_transaction_at
from ledger
group by 1, 2
