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
-- Priced usage rolled up per account, UTC day, usage kind and resource, rebuilt a whole day
-- at a time for the days the partition window touches: keeps invoice lines cheap to rebuild
-- whatever the length of the history.

with priced as (
    select * from {{ ref('fct_priced_usage') }}
    where {{ in_window_periods('hour', 'day') }}
),

rolled as (
    select
        date_trunc('day', hour, 'UTC') as usage_day,
        account_id,
        usage_kind,
        resource,
        machine_type,
        unit,
        coalesce(sum(quantity) filter (where not is_covered_by_rental), 0) as charged_quantity,
        coalesce(sum(quantity) filter (where is_covered_by_rental), 0) as covered_quantity,
        sum(amount) as amount_exact,
        sum(list_amount) - sum(amount) as covered_amount,
        count(*) filter (where is_estimate) as estimate_rows
    from priced
    group by 1, 2, 3, 4, 5, 6
)

select
    md5(concat_ws(
        '|', {{ iso_utc('usage_day') }}, account_id, usage_kind, resource,
        coalesce(machine_type, ''), unit
    )) as priced_usage_day_key,
    *
from rolled
