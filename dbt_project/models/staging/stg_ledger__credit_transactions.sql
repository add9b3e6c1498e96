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
        -- The ledger's own readings (migration 0010, billing_pipeline/ledger/keys.py), never
        -- re-parsed here: the hour a usage entry settles (null for other entries) and the
        -- month the entry belongs to (the usage hour's, an SLA credit's measured month, else
        -- the month it was posted). Invoices and `billing explain` read the same two.
        billing.ledger_entry_usage_hour(type, reference) as usage_hour,
        billing.ledger_entry_period(type, reference, created_at) as entry_period,
        case
            when billing.ledger_entry_usage_hour(type, reference) is not null
                then reference ->> 'usage_kind'
        end as usage_kind,
        reason,
        actor,
        created_at
    from source
)

select * from renamed
