with source as (
    select * from {{ source('ledger', 'grants') }}
),

renamed as (
    select
        entry_id as grant_entry_id,
        account_id,
        kind,
        source_type,
        priority,
        expires_at,
        granted,
        granted_at,
        -- The month the credits became usable: no draw of the grant is dated before it
        -- (int_grant_draws_dated).
        date_trunc('month', granted_at, 'UTC')::date as granted_month,
        paid_amount,
        paid_currency
    from source
)

select * from renamed
