with source as (
    select * from {{ source('platform', 'deployments') }}
),

renamed as (
    select
        id as deployment_id,
        account_id,
        namespace,
        name as deployment_name,
        created_at,
        deleted_at
    from source
)

select * from renamed
