{#- The draws on the credit grants as both credit marts read them, within the mart's own
    statement: the daily sums of int_grant_draws_daily for the days before the last two it holds,
    then every draw written since, read live. The live part is the ledger as the mart's statement
    sees it, as the grants and the accounts' newest entries the marts read beside it, so a
    posting made while the hourly build runs (a top-up that pays a debt, say) is in all of them
    or in none. Each draw is in exactly one part: its day written is before the window's start or
    not. The start is written into the view when it is built (rollup_window_start); until the
    next build it only lets a little more be read live, never less. -#}

{%- set since = rollup_window_start(ref('int_grant_draws_daily'), 'written_day') %}

with daily as (
    select * from {{ ref('int_grant_draws_daily') }}
),

written as (
    {{ grant_draws_written_since(
        ref('stg_ledger__credit_transactions'), ref('stg_ledger__grant_draws'), ref('int_grant_draws_dated'), since
    ) }}
)

select
    grant_entry_id,
    account_id,
    kind,
    draw_month,
    is_expiry,
    amount
from daily
where written_day < {{ since }}
union all
select
    grant_entry_id,
    account_id,
    kind,
    draw_month,
    is_expiry,
    amount
from written
