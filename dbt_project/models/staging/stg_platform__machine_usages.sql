with source as (
    select * from {{ source('platform', 'machine_usages') }}
),

renamed as (
    select
        id as machine_usage_id,
        account_id,
        machine_id,
        machine_type,
        node_name,
        started_at,
        ended_at,
        updated_at
    from source
)

select * from renamed
