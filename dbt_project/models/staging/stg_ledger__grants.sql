with source as (
    select * from {{ source('ledger', 'grants') }}
),

-- The period of the entry that opened the grant (billing.ledger_entry_period): the month the
-- invoice shows it in (an SLA credit posted at the close of October is October's).
opening_entries as (
    select
        transaction_id,
        entry_period
    from {{ ref('stg_ledger__credit_transactions') }}
),

renamed as (
    select
        source.entry_id as grant_entry_id,
        source.account_id,
        source.kind,
        source.source_type,
        source.priority,
        source.expires_at,
        source.granted,
        source.granted_at,
        -- The month the grant counts in, as on the invoice: no draw of it is dated before
        -- (int_grant_draws_dated).
        opening_entries.entry_period as granted_month,
        source.paid_amount,
        source.paid_currency
    from source
    inner join opening_entries on source.entry_id = opening_entries.transaction_id
)

select * from renamed
