-- Every pricing row with the reasons it cannot be used. Rejected rows (negative price,
-- unknown resource or unit, empty window, machine price without machine type, windows that
-- overlap another row of the same resource and machine type) are never used for pricing:
-- both rows of an overlap are rejected, since nothing says which one is right. Usage in an
-- hour they would have covered then has no price and blocks the build with a message.
with pricing as (
    select * from {{ ref('stg_platform__pricing_configs') }}
),

expected_units (resource, unit) as (
    values
    ('cpu', 'core_hour'),
    ('memory', 'gib_hour'),
    ('gpu', 'gpu_hour'),
    ('storage', 'gib_hour'),
    ('network_egress', 'gib'),
    ('machine', 'machine_hour')
),

overlapping as (
    select
        a.pricing_config_id,
        string_agg(b.pricing_config_id, ', ' order by b.pricing_config_id) as overlapping_ids
    from pricing as a
    inner join pricing as b
        on
            a.resource = b.resource
            and a.machine_type is not distinct from b.machine_type
            and a.pricing_config_id <> b.pricing_config_id
            and a.effective_from < coalesce(b.effective_to, 'infinity'::timestamptz)
            and b.effective_from < coalesce(a.effective_to, 'infinity'::timestamptz)
    group by a.pricing_config_id
),

checked as (
    select
        pricing.*,
        array_remove(array[
            case
                when pricing.unit_price < 0
                    then 'negative unit_price ' || pricing.unit_price::text
            end,
            case
                when expected_units.resource is null
                    then 'unknown resource ' || coalesce(pricing.resource, 'null')
            end,
            case
                when expected_units.unit <> pricing.unit
                    then
                        'unit ' || pricing.unit || ' does not fit resource ' || pricing.resource
                        || ' (expected ' || expected_units.unit || ')'
            end,
            case
                when pricing.resource = 'machine' and pricing.machine_type is null
                    then 'machine price without machine_type'
            end,
            case
                when
                    pricing.resource in ('cpu', 'memory')
                    and pricing.basis not in ('usage', 'max_request_usage')
                    then 'unknown basis ' || coalesce(pricing.basis, 'null')
            end,
            case
                when pricing.effective_to <= pricing.effective_from
                    then 'effective_to is not after effective_from'
            end,
            case
                when overlapping.pricing_config_id is not null
                    then 'window overlaps pricing config(s) ' || overlapping.overlapping_ids
            end
        ], null) as problems
    from pricing
    left join expected_units on pricing.resource = expected_units.resource
    left join overlapping on pricing.pricing_config_id = overlapping.pricing_config_id
)

select
    pricing_config_id,
    resource,
    machine_type,
    unit,
    unit_price,
    -- basis only matters for cpu and memory; gpu is billed on requests, the rest on usage.
    case when resource in ('cpu', 'memory') then basis else 'usage' end as basis,
    effective_from,
    effective_to,
    cardinality(problems) = 0 as is_valid,
    nullif(array_to_string(problems, '; '), '') as rejection_reason
from checked
