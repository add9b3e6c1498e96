with source as (
    select * from {{ source('platform', 'accounts') }}
),

renamed as (
    select
        id as account_id,
        name as account_name,
        email,
        low_balance_threshold::numeric as low_balance_threshold,
        grace_period_hours,
        volume_policy,
        volume_retention_days,
        early_idle_deletion,
        created_at
    from source
)

select * from renamed
