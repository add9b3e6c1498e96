-- Hours with usage and no valid price in force, per resource and machine type, with a message
-- a person can act on. Any row here blocks fct_priced_usage (see assert_prices_in_force).
with workload as (
    select
        hour,
        resource,
        null::text as machine_type,
        account_id
    from {{ ref('int_workload_usage_priced') }}
    where unit_price is null and account_id is not null
),

rentals as (
    select
        hour,
        'machine'::text as resource,
        machine_type,
        account_id
    from {{ ref('int_machine_rentals_priced') }}
    where unit_price is null
),

missing as (
    select
        hour,
        resource,
        machine_type,
        count(distinct account_id) as account_count,
        min(account_id) as example_account_id
    from (
        select * from workload
        union all
        select * from rentals
    ) as u
    group by hour, resource, machine_type
),

rejected as (
    select * from {{ ref('int_pricing_configs_checked') }}
    where not is_valid
)

select
    missing.hour,
    missing.resource,
    missing.machine_type,
    missing.account_count,
    missing.example_account_id,
    'no price in force for resource ' || missing.resource
    || ', machine type ' || coalesce(missing.machine_type, '-')
    || ', hour ' || {{ iso_utc('missing.hour') }}
    || ' (' || missing.account_count || ' account(s), e.g. ' || missing.example_account_id || ')'
    || coalesce('; rejected pricing config(s) for it: ' || (
        select string_agg(r.pricing_config_id || ' (' || r.rejection_reason || ')', ', ' order by r.pricing_config_id)
        from rejected as r
        where
            r.resource = missing.resource
            and r.machine_type is not distinct from missing.machine_type
            and missing.hour >= r.effective_from
            and (r.effective_to is null or missing.hour < r.effective_to)
    ), '') as message
from missing
