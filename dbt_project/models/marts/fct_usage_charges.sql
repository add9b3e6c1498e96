{#- Incremental by the hour window: the pre-hook deletes the window's rows (index on the hour),
    then the window's rows are appended. No delete by key: it is rendered when dbt parses, when
    the window is not known yet, and would scan the whole history (macros/partition_window.sql). -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='append_new_columns',
        pre_hook="{{ delete_window('hour') }}",
        indexes=[{'columns': ['hour']}, {'columns': ['account_id', 'hour']}],
    )
}}
-- The ledger-bound amounts: what one usage_deduction per account, hour and usage kind should
-- take, rounded half-even to 6 decimal places here (the round_half_even macro). The ledger posts
-- these amounts as they are; invoices sum the posted entries, never re-price or re-round them.

with priced as (
    select * from {{ ref('fct_priced_usage') }}
    where {{ in_hour_window('hour') }}
)

select
    md5(concat_ws('|', {{ iso_utc('hour') }}, account_id, usage_kind)) as usage_charge_key,
    hour,
    account_id,
    usage_kind,
    {{ round_half_even('sum(amount)', 6) }} as amount,
    sum(amount) as amount_exact,
    sum(list_amount) - sum(amount) as covered_amount,
    bool_or(is_estimate) as is_estimate,
    count(*) as priced_row_count
from priced
group by hour, account_id, usage_kind
