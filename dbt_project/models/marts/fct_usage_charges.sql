{#- incremental_predicates confine dbt's delete-by-key to the window's rows (index on the
    hour), so the cost of a run follows the new data, not the history. -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='usage_charge_key',
        incremental_predicates=[in_hour_window('DBT_INTERNAL_DEST.hour')],
        on_schema_change='append_new_columns',
        pre_hook="{{ delete_window('hour') }}",
        indexes=[{'columns': ['hour']}, {'columns': ['account_id', 'hour']}],
    )
}}
-- The ledger-bound amounts: what one usage_deduction per account, hour and usage kind should
-- take, rounded half-even to 6 decimal places here and nowhere else.

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
