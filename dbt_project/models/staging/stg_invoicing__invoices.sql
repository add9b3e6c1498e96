with source as (
    select * from {{ source('invoicing', 'invoices') }}
),

renamed as (
    select
        id as invoice_id,
        invoice_number,
        number as invoice_sequence,
        account_id,
        period_month as invoice_month,
        status as invoice_status,
        opening_balance,
        total as lines_total,
        closing_balance,
        previous_invoice_id,
        unbilled_hour_count,
        chain_head_entry_id,
        chain_head_hash,
        issued_at
    from source
)

select * from renamed
