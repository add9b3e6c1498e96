{#- Incremental by the hour window: the pre-hook deletes the window's rows (index on the hour),
    then the window's rows are appended. No delete by key: it is rendered when dbt parses, when
    the window is not known yet, and would scan the whole history (macros/partition_window.sql). -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='append_new_columns',
        pre_hook="{{ delete_window('hour') }}",
        indexes=[{'columns': ['hour']}],
    )
}}
-- Per account, rented node and hour: the capacity the account rented there and what its
-- workloads consumed on it (covered by the rental), or, for an account whose workloads ran on
-- a node only other accounts rent, an exception row. Consumption on shared (unrented) nodes is
-- charged by consumption and lives in fct_priced_usage only.

with rentals as (
    select * from {{ ref('int_machine_rentals_priced') }}
    where {{ in_hour_window('hour') }}
),

usage as (
    select * from {{ ref('int_workload_usage_priced') }}
    where
        {{ in_hour_window('hour') }}
        and coverage in ('covered_by_rental', 'other_account_node')
),

rented as (
    select
        hour,
        account_id,
        node_name,
        string_agg(distinct machine_type, ', ' order by machine_type) as machine_types,
        sum(quantity) as machine_hours_rented,
        sum(amount) as rental_amount
    from rentals
    group by hour, account_id, node_name
),

consumed as (
    select
        hour,
        account_id,
        node_name,
        sum(case when resource = 'cpu' then usage_quantity else 0 end) as cpu_core_hours_used,
        sum(case when resource = 'memory' then usage_quantity else 0 end) as memory_gib_hours_used,
        sum(case when resource = 'gpu' then usage_quantity else 0 end) as gpu_hours_requested,
        sum(case when resource = 'network_egress' then usage_quantity else 0 end) as egress_gib,
        sum(list_amount) as consumption_list_amount,
        sum(amount) as consumption_charged_amount,
        min(renter_account_ids) as renter_account_ids
    from usage
    group by hour, account_id, node_name
),

joined as (
    select
        coalesce(rented.hour, consumed.hour) as hour,
        coalesce(rented.account_id, consumed.account_id) as account_id,
        coalesce(rented.node_name, consumed.node_name) as node_name,
        rented.machine_types,
        coalesce(rented.machine_hours_rented, 0) as machine_hours_rented,
        coalesce(rented.rental_amount, 0) as rental_amount,
        coalesce(consumed.cpu_core_hours_used, 0) as cpu_core_hours_used,
        coalesce(consumed.memory_gib_hours_used, 0) as memory_gib_hours_used,
        coalesce(consumed.gpu_hours_requested, 0) as gpu_hours_requested,
        coalesce(consumed.egress_gib, 0) as egress_gib,
        coalesce(consumed.consumption_list_amount, 0) as consumption_list_amount,
        coalesce(consumed.consumption_charged_amount, 0) as consumption_charged_amount,
        rented.account_id is not null as is_renter,
        consumed.renter_account_ids
    from rented
    full outer join consumed
        on
            rented.hour = consumed.hour
            and rented.account_id = consumed.account_id
            and rented.node_name = consumed.node_name
)

select
    md5(concat_ws('|', {{ iso_utc('hour') }}, account_id, node_name)) as reconciliation_key,
    hour,
    account_id,
    node_name,
    machine_types,
    machine_hours_rented,
    rental_amount,
    cpu_core_hours_used,
    memory_gib_hours_used,
    gpu_hours_requested,
    egress_gib,
    case when machine_hours_rented > 0 then cpu_core_hours_used / machine_hours_rented end
        as cpu_cores_used_per_machine_hour,
    case when machine_hours_rented > 0 then memory_gib_hours_used / machine_hours_rented end
        as memory_gib_used_per_machine_hour,
    case when is_renter then consumption_list_amount else 0 end as covered_consumption_amount,
    consumption_charged_amount,
    case
        when is_renter and consumption_list_amount > 0 then 'covered_by_rental'
        when is_renter then 'idle_rental'
        else 'exception'
    end as reconciliation_status,
    not is_renter as is_exception,
    case
        when not is_renter then
            'workloads of account ' || account_id || ' ran on node ' || node_name
            || ' rented by account(s) ' || renter_account_ids
            || ' at ' || {{ iso_utc('hour') }} || '; charged by consumption, check the node assignment'
    end as exception_reason
from joined
