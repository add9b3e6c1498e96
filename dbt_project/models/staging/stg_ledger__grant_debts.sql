with source as (
    select * from {{ source('ledger', 'grant_debts') }}
),

renamed as (
    select
        entry_id as debit_entry_id,
        account_id,
        outstanding
    from source
)

select * from renamed
