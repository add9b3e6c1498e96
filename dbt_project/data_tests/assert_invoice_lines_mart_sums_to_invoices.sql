-- fct_invoice_lines is the issued invoices' lines: per invoice they sum to fct_invoices.lines_total,
-- and every invoice's lines are there. Rows returned are invoices where the two marts disagree.
with line_sums as (
    select
        invoice_id,
        sum(amount) as amount
    from {{ ref('fct_invoice_lines') }}
    group by invoice_id
)

select
    i.invoice_id,
    i.lines_total,
    l.amount
from {{ ref('fct_invoices') }} as i
left join line_sums as l on i.invoice_id = l.invoice_id
where coalesce(l.amount, 0) <> i.lines_total
