with source as (
    select * from {{ source('invoicing', 'invoice_lines') }}
),

renamed as (
    select
        invoice_id,
        line_no,
        line_type,
        usage_kind,
        period_month as line_period_month,
        prior_period as is_prior_period,
        description,
        amount,
        cardinality(ledger_entry_ids) as ledger_entry_count
    from source
)

select * from renamed
