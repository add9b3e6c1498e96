with source as (
    select * from {{ source('platform', 'pricing_configs') }}
),

renamed as (
    select
        id::text as pricing_config_id,
        lower(btrim(resource)) as resource,
        nullif(btrim(machine_type), '') as machine_type,
        lower(btrim(unit)) as unit,
        unit_price::numeric as unit_price,
        lower(btrim(basis)) as basis,
        effective_from,
        effective_to
    from source
)

select * from renamed
