with source as (
    select * from {{ source('invoicing', 'sla_measurements') }}
),

renamed as (
    select
        deployment_id,
        month as sla_month,
        account_id,
        existed_minutes,
        excluded_minutes,
        eligible_minutes,
        measured_minutes,
        down_minutes,
        unmeasured_minutes,
        availability,
        tier_id as sla_tier_id,
        credit_share,
        base_amount,
        credit_amount,
        outcome as sla_outcome,
        idempotency_key,
        measured_at
    from source
)

select * from renamed
