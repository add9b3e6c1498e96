-- docs/rules/month-end.md: every invoice's closing balance is its opening balance plus the exact sum
-- of its lines. Rows returned are invoices that break it.
select
    invoice_id,
    invoice_number,
    opening_balance,
    sum_of_lines,
    closing_balance
from {{ ref('fct_invoices') }}
where
    closing_balance <> opening_balance + sum_of_lines
    or lines_total <> sum_of_lines
