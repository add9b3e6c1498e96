-- Invoice lines per account and calendar month (UTC): one per usage kind and resource (and
-- machine type for rentals), one per top-up, SLA credit, adjustment and reversal. Amounts are
-- signed like the ledger: + credits the account, - debits it; usage lines are rounded
-- half-even to 6 decimal places. Usage deductions themselves are not lines: the usage lines
-- are what they settle.
--
-- Incremental: a build replaces the usage lines of the months its hours fall in (summed from
-- those months' days only) and every ledger line (a few per account and month, found through
-- a partial index; an entry posted at any time lands in the month it was posted). Rebuilding
-- every month's usage lines every hour read the whole daily history (4.8 s at a year on 2,000
-- accounts). A full refresh gives the same rows (tests/integration/test_dbt_models.py).
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='append_new_columns',
        pre_hook="{{ delete_invoice_lines_to_rebuild() }}",
        indexes=[{'columns': ['invoice_month']}, {'columns': ['account_id', 'invoice_month']}],
    )
}}

with usage_days as (
    select * from {{ ref('int_priced_usage_daily') }}
    where {{ in_window_periods('usage_day', 'month') }}
),

ledger as (
    select * from {{ ref('stg_ledger__credit_transactions') }}
    where transaction_type in ('topup', 'auto_topup', 'sla_credit', 'admin_adjustment', 'reversal')
    -- A reversal that corrects a usage deduction (late data lowered an hour's usage) is part of
    -- settling that usage: the usage lines already show the corrected usage, so listing the
    -- reversal as well would credit it twice.
    and not (transaction_type = 'reversal' and reference_usage_kind is not null)
),

usage_lines as (
    select
        account_id,
        date_trunc('month', usage_day, 'UTC') as invoice_month,
        'usage'::text as line_type,
        usage_kind,
        resource,
        machine_type,
        sum(charged_quantity) as quantity,
        sum(covered_quantity) as covered_quantity,
        unit,
        -{{ round_half_even('sum(amount_exact)', 6) }} as amount,
        sum(estimate_rows) > 0 as is_estimate,
        null::bigint as transaction_id,
        null::timestamptz as occurred_at,
        usage_kind || ' ' || resource || coalesce(' (' || machine_type || ')', '') as description
    from usage_days
    group by 1, 2, 3, 4, 5, 6, 9
),

ledger_lines as (
    select
        account_id,
        date_trunc('month', created_at, 'UTC') as invoice_month,
        transaction_type as line_type,
        null::text as usage_kind,
        null::text as resource,
        null::text as machine_type,
        null::numeric as quantity,
        null::numeric as covered_quantity,
        null::text as unit,
        amount::numeric as amount,
        false as is_estimate,
        transaction_id,
        created_at as occurred_at,
        coalesce(reason, reference::text) as description
    from ledger
),

lines as (
    select * from usage_lines
    union all
    select * from ledger_lines
)

select
    md5(concat_ws(
        '|', account_id, {{ iso_utc('invoice_month') }}, line_type,
        coalesce(usage_kind, ''), coalesce(resource, ''), coalesce(machine_type, ''),
        coalesce(unit, ''), coalesce(transaction_id::text, '')
    )) as invoice_line_key,
    account_id,
    (invoice_month at time zone 'UTC')::date as invoice_month,
    line_type,
    usage_kind,
    resource,
    machine_type,
    quantity,
    covered_quantity,
    unit,
    amount,
    is_estimate,
    transaction_id,
    occurred_at,
    description
from lines
