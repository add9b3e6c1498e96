{#- The draws on the credit grants as both credit marts read them, within the mart's own
    statement: the daily sums of int_grant_draws_daily for the days before the last two it holds,
    then every draw written since, read live. The live part is the ledger as the mart's statement
    sees it, as the grants and the accounts' newest entries the marts read beside it, so a
    posting made while the hourly build runs (a top-up that pays a debt, say) is in all of them
    or in none. Each draw is in exactly one part: its day written is before the cutoff or not. -#}

with daily as (
    select * from {{ ref('int_grant_draws_daily') }}
),

cutoff as (
    select coalesce({{ utc_days_after('max(written_day)', -1) }}, '-infinity'::timestamptz) as since
    from daily
),

written as (
    {{ grant_draws_written_since(
        ref('stg_ledger__credit_transactions'), ref('stg_ledger__grant_draws'), '(select cutoff.since from cutoff)'
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
where written_day < (select cutoff.since from cutoff)
union all
select
    dated.grant_entry_id,
    dated.account_id,
    dated.kind,
    dated.draw_month,
    dated.is_expiry,
    dated.amount
from written
inner join {{ ref('int_grant_draws_dated') }} as dated on written.draw_id = dated.draw_id
