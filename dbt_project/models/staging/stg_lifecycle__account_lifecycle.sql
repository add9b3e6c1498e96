with source as (
    select * from {{ source('lifecycle', 'account_lifecycle') }}
),

renamed as (
    select
        account_id,
        state as lifecycle_state,
        entered_at as lifecycle_state_entered_at,
        grace_deadline,
        evaluated_at as lifecycle_evaluated_at
    from source
)

select * from renamed
