with source as (
    select * from {{ source('platform', 'domains') }}
),

renamed as (
    select
        hostname,
        deployment_id,
        status as domain_status
    from source
)

select * from renamed
