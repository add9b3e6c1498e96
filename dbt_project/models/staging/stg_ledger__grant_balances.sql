with source as (
    select * from {{ source('ledger', 'grant_balances') }}
),

renamed as (
    select
        grant_entry_id,
        account_id,
        drawn,
        expired,
        remaining
    from source
)

select * from renamed
