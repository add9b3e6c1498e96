-- docs/rules/pricing.md: consumption on a node the same account rents in that hour is covered by
-- the rental; on a node nobody rents it is charged; on a node rented only by other accounts it
-- is charged and flagged as an exception for a person to look at. A rental covering any part
-- of the hour covers that hour's consumption on the node (usage is hourly, not per minute).
with usage as (
    select * from {{ ref('int_workload_usage_metered') }}
),

rentals as (
    select * from {{ ref('stg_ingestion__machine_rental_hours') }}
),

renters_by_node_hour as (
    select
        hour,
        node_name,
        array_agg(distinct account_id order by account_id) as renter_account_ids
    from rentals
    group by hour, node_name
)

select
    usage.hour,
    usage.account_id,
    usage.deployment_id,
    usage.node_name,
    usage.resource,
    usage.unit,
    usage.usage_quantity,
    usage.max_request_usage_quantity,
    array_to_string(renters.renter_account_ids, ', ') as renter_account_ids,
    case
        when renters.node_name is null then 'charged'
        when usage.account_id = any(renters.renter_account_ids) then 'covered_by_rental'
        else 'other_account_node'
    end as coverage
from usage
left join renters_by_node_hour as renters
    on usage.hour = renters.hour
    and usage.node_name = renters.node_name
