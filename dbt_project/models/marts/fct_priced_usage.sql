{#- Incremental by the hour window: the pre-hook deletes the window's rows (index on the hour),
    then the window's rows are appended. No delete by key: it is rendered when dbt parses, when
    the window is not known yet, and would scan the whole history (macros/partition_window.sql). -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='append_new_columns',
        pre_hook=["{{ assert_prices_in_force() }}", "{{ delete_window('hour') }}"],
        indexes=[{'columns': ['hour']}, {'columns': ['account_id', 'hour']}],
    )
}}
-- depends_on: {{ ref('int_usage_prices_missing') }}
-- depends_on: {{ ref('int_pricing_configs_checked') }}

with workload as (
    select * from {{ ref('int_workload_usage_priced') }}
    where
        {{ in_hour_window('hour') }}
        and account_id is not null
),

rentals as (
    select * from {{ ref('int_machine_rentals_priced') }}
    where {{ in_hour_window('hour') }}
),

workload_rows as (
    select
        hour,
        account_id,
        'workload_consumption'::text as usage_kind,
        resource,
        deployment_id,
        null::text as machine_usage_id,
        null::text as machine_id,
        null::text as machine_type,
        coverage,
        sum(quantity) as quantity,
        unit,
        unit_price,
        basis,
        pricing_config_id,
        sum(list_amount) as list_amount,
        sum(amount) as amount,
        bool_or(is_estimate) as is_estimate
    from workload
    group by hour, account_id, resource, deployment_id, coverage, unit, unit_price, basis, pricing_config_id
),

rental_rows as (
    select
        hour,
        account_id,
        'machine_rental'::text as usage_kind,
        'machine'::text as resource,
        null::text as deployment_id,
        machine_usage_id,
        machine_id,
        machine_type,
        'rental'::text as coverage,
        quantity,
        unit,
        unit_price,
        'usage'::text as basis,
        pricing_config_id,
        amount as list_amount,
        amount,
        is_estimate
    from rentals
),

unioned as (
    select * from workload_rows
    union all
    select * from rental_rows
)

select
    md5(concat_ws(
        '|', {{ iso_utc('hour') }}, account_id, usage_kind, resource,
        coalesce(deployment_id, ''), coalesce(machine_usage_id, ''), coverage
    )) as priced_usage_key,
    hour,
    account_id,
    usage_kind,
    resource,
    deployment_id,
    machine_usage_id,
    machine_id,
    machine_type,
    coverage,
    coverage = 'covered_by_rental' as is_covered_by_rental,
    coverage = 'other_account_node' as is_reconciliation_exception,
    quantity,
    unit,
    unit_price,
    basis,
    pricing_config_id,
    list_amount,
    amount,
    is_estimate
from unioned
