-- Issued invoices (docs/rules/month-end.md), one row per account and month, with the sums of their
-- lines by kind. lines_total is the sum of all lines; closing = opening + lines_total.
with invoices as (
    select * from {{ ref('stg_invoicing__invoices') }}
),

lines as (
    select
        invoice_id,
        count(*) as line_count,
        sum(ledger_entry_count) as ledger_entry_count,
        coalesce(
            sum(amount) filter (
                where line_type = 'usage' and usage_kind = 'workload_consumption' and not is_prior_period
            ),
            0
        ) as workload_consumption_amount,
        coalesce(
            sum(amount) filter (where line_type = 'usage' and usage_kind = 'machine_rental' and not is_prior_period), 0
        ) as machine_rental_amount,
        coalesce(sum(amount) filter (where line_type = 'sla_credit'), 0) as sla_credit_amount,
        coalesce(sum(amount) filter (where line_type in ('topup', 'auto_topup')), 0) as topup_amount,
        coalesce(sum(amount) filter (where is_prior_period), 0) as prior_period_amount,
        coalesce(sum(amount), 0) as sum_of_lines
    from {{ ref('stg_invoicing__invoice_lines') }}
    group by invoice_id
)

select
    i.invoice_id,
    i.invoice_number,
    i.invoice_sequence,
    i.account_id,
    i.invoice_month,
    i.invoice_status,
    i.opening_balance,
    i.lines_total,
    i.closing_balance,
    coalesce(l.line_count, 0) as line_count,
    coalesce(l.ledger_entry_count, 0) as ledger_entry_count,
    coalesce(l.workload_consumption_amount, 0) as workload_consumption_amount,
    coalesce(l.machine_rental_amount, 0) as machine_rental_amount,
    coalesce(l.sla_credit_amount, 0) as sla_credit_amount,
    coalesce(l.topup_amount, 0) as topup_amount,
    coalesce(l.prior_period_amount, 0) as prior_period_amount,
    coalesce(l.sum_of_lines, 0) as sum_of_lines,
    i.unbilled_hour_count,
    i.chain_head_entry_id,
    i.chain_head_hash,
    i.issued_at
from invoices as i
left join lines as l on i.invoice_id = l.invoice_id
