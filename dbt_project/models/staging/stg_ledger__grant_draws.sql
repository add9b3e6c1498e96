with source as (
    select * from {{ source('ledger', 'grant_draws') }}
),

renamed as (
    select
        id as draw_id,
        entry_id as drawing_entry_id,
        grant_entry_id,
        amount
    from source
)

select * from renamed
