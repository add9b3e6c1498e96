{#- Incremental by the hour window: the pre-hook deletes the window's rows (index on the hour),
    then the window's rows are appended. No delete by key: it is rendered when dbt parses, when
    the window is not known yet, and would scan the whole history (macros/partition_window.sql). -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        pre_hook="{{ delete_window('usage_day', 'day') }}",
        indexes=[{'columns': ['usage_day']}],
    )
}}
-- Ledger-bound hourly charges summed per account, day and usage kind (sums of amounts already
-- rounded per hour, so they add up to what the deductions take).

with charges as (
    select * from {{ ref('fct_usage_charges') }}
    where {{ in_window_periods('hour', 'day') }}
),

rolled as (
    select
        date_trunc('day', hour, 'UTC') as usage_day,
        account_id,
        usage_kind,
        sum(amount) as amount,
        count(*) as charged_hours
    from charges
    group by 1, 2, 3
)

select
    md5(concat_ws('|', {{ iso_utc('usage_day') }}, account_id, usage_kind)) as usage_charge_day_key,
    *
from rolled
