-- The lines of the issued invoices, as issued (billing.invoice_lines, docs/rules/month-end.md):
-- the same lines, amounts and periods the customer's invoice and `billing explain` show. Each
-- line sums exact ledger entries; its period is billing.ledger_entry_period of those entries.
-- For a month not invoiced yet, see fct_unbilled_usage (an estimate, named as one).

with lines as (
    select * from {{ ref('stg_invoicing__invoice_lines') }}
),

invoices as (
    select * from {{ ref('stg_invoicing__invoices') }}
)

select
    lines.invoice_id::text || '-' || lines.line_no::text as invoice_line_key,
    lines.invoice_id,
    invoices.invoice_number,
    invoices.account_id,
    invoices.invoice_month,
    lines.line_no,
    lines.line_type,
    lines.usage_kind,
    lines.line_period_month,
    lines.is_prior_period,
    lines.description,
    lines.amount,
    lines.ledger_entry_count
from lines
inner join invoices on lines.invoice_id = invoices.invoice_id
