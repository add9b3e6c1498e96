with source as (
    select * from {{ source('ledger', 'credit_transactions') }}
),

renamed as (
    select
        id as transaction_id,
        account_id,
        account_seq,
        type as transaction_type,
        amount,
        balance_after,
        idempotency_key,
        reference,
        -- The usage window a usage_deduction settles (see _ledger__sources.yml).
        case
            when reference ->> 'hour' ~ '^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}'
                then (reference ->> 'hour')::timestamptz
        end as reference_hour,
        reference ->> 'usage_kind' as reference_usage_kind,
        reason,
        actor,
        created_at
    from source
)

select * from renamed
