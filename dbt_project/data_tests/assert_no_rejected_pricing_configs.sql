-- Pricing rows that cannot be used (negative price, overlapping windows, unknown resource or
-- unit, empty window ...): reported as a warning on every build (a Dagster asset check on
-- int_pricing_configs_checked), never used. Usage in an hour only such a row would price
-- stops fct_priced_usage with an error naming resource, machine type and hour.
{{ config(severity='warn') }}

select
    pricing_config_id,
    resource,
    machine_type,
    effective_from,
    effective_to,
    'pricing config ' || pricing_config_id || ' rejected: ' || rejection_reason as message
from {{ ref('int_pricing_configs_checked') }}
where not is_valid
