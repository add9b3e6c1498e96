-- Each hour of consumption priced with the price in force at the start of that hour
-- (effective_from <= hour < effective_to). The basis picks the quantity. Covered consumption
-- keeps its list value but is charged zero. Rows without a valid price keep a null price:
-- int_usage_prices_missing reports them and fct_priced_usage refuses to build.
with usage as (
    select * from {{ ref('int_workload_usage_reconciled') }}
),

prices as (
    select * from {{ ref('int_pricing_configs_checked') }}
    where is_valid and resource <> 'machine'
),

completeness as (
    select * from {{ ref('stg_ingestion__metric_hours') }}
),

priced as (
    select
        usage.*,
        prices.pricing_config_id,
        prices.unit_price,
        prices.basis,
        case
            when prices.basis = 'max_request_usage' then usage.max_request_usage_quantity
            else usage.usage_quantity
        end as quantity,
        not coalesce(completeness.is_complete, false) as is_estimate
    from usage
    left join prices
        on
            usage.resource = prices.resource
            and usage.hour >= prices.effective_from
            and (prices.effective_to is null or usage.hour < prices.effective_to)
    left join completeness on usage.hour = completeness.hour
)

select
    *,
    quantity * unit_price as list_amount,
    case when coverage = 'covered_by_rental' then 0 else quantity * unit_price end as amount
from priced
