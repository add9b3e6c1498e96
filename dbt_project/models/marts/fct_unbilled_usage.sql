-- Usage of the months an account has no invoice for yet: an ESTIMATE of the usage lines its
-- next invoice will carry, per account, month, usage kind and resource. It is priced usage
-- (fct_priced_usage) summed exactly and rounded half-even per line here; the invoice will sum
-- the ledger's entries instead (each hour rounded when it was settled), so the two can differ
-- by rounding, by hours settled late, and by what the ledger holds besides usage. Once the
-- month is invoiced its rows leave this view: read fct_invoice_lines then.
{{ config(materialized='view') }}

with usage_months as (
    select * from {{ ref('int_priced_usage_monthly') }}
),

invoices as (
    select * from {{ ref('stg_invoicing__invoices') }}
)

select
    md5(concat_ws(
        '|', {{ iso_utc('usage_months.usage_month') }}, usage_months.account_id, usage_months.usage_kind,
        usage_months.resource, coalesce(usage_months.machine_type, ''), usage_months.unit
    )) as unbilled_usage_key,
    usage_months.account_id,
    (usage_months.usage_month at time zone 'UTC')::date as usage_month,
    usage_months.usage_kind,
    usage_months.resource,
    usage_months.machine_type,
    usage_months.unit,
    usage_months.charged_quantity,
    usage_months.covered_quantity,
    usage_months.amount_exact,
    -{{ round_half_even('usage_months.amount_exact', 6) }} as estimated_amount,
    usage_months.has_estimated_hours
from usage_months
where not exists (
    select 1 from invoices
    where
        invoices.account_id = usage_months.account_id
        and invoices.invoice_month >= (usage_months.usage_month at time zone 'UTC')::date
)
