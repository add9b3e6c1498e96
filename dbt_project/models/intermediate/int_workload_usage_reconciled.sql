-- docs/rules/pricing.md: consumption on a node the same account rents in that hour is covered by
-- the rental; on a node nobody rents it is charged; on a node rented only by other accounts it
-- is charged and flagged as an exception for a person to look at. A rental covering any part
-- of the hour covers that hour's consumption on the node (usage is hourly, not per minute).
-- The renters are looked up per usage row (a lateral join on the hour and node, index
-- machine_rental_hours_node_idx), not aggregated over every rented hour first: the caller's hour
-- window reaches the usage rows only, so an aggregate over all rentals would read the whole
-- rental history every hour (1.7 s per model at a year of history on 2,000 machines).
with usage as (
    select * from {{ ref('int_workload_usage_metered') }}
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
        when renters.renter_account_ids is null then 'charged'
        when usage.account_id = any(renters.renter_account_ids) then 'covered_by_rental'
        else 'other_account_node'
    end as coverage
from usage
left join lateral (
    select array_agg(distinct rentals.account_id order by rentals.account_id) as renter_account_ids
    from {{ ref('stg_ingestion__machine_rental_hours') }} as rentals
    where
        rentals.hour = usage.hour
        and rentals.node_name = usage.node_name
) as renters on true
