-- Machine rentals priced per machine-hour by machine type, with the price in force at the
-- start of the hour. An ongoing rental's current hour, cut short by "now" at ingestion, is an
-- estimate until the hour has passed.
with rentals as (
    select * from {{ ref('stg_ingestion__machine_rental_hours') }}
),

usages as (
    select * from {{ ref('stg_platform__machine_usages') }}
),

prices as (
    select * from {{ ref('int_pricing_configs_checked') }}
    where is_valid and resource = 'machine'
)

select
    rentals.hour,
    rentals.account_id,
    rentals.machine_usage_id,
    rentals.machine_id,
    rentals.machine_type,
    rentals.node_name,
    rentals.rented_seconds,
    rentals.machine_hours as quantity,
    'machine_hour'::text as unit,
    prices.pricing_config_id,
    prices.unit_price,
    rentals.machine_hours * prices.unit_price as amount,
    coalesce(
        rentals.is_ongoing
        and extract(epoch from greatest(usages.started_at, rentals.hour) - rentals.hour)
        + rentals.rented_seconds < 3600,
        false
    ) as is_estimate
from rentals
left join usages on rentals.machine_usage_id = usages.machine_usage_id
left join prices
    on
        rentals.machine_type = prices.machine_type
        and rentals.hour >= prices.effective_from
        and (prices.effective_to is null or rentals.hour < prices.effective_to)
