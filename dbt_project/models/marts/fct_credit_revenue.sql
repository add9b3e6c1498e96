-- Per account and UTC month, the revenue view of the credits (docs/rules/credit-reports.md):
-- recognised = paid credits drawn in the month, breakage = paid credits expired in it, deferred =
-- paid credits remaining at its end, promotion_cost = free credits drawn in it. A draw counts in
-- the month of int_grant_draws_dated (never before its grant's month); the draws are read as
-- daily sums (int_grant_draws_current), not one by one. Deferred is summed grant by
-- grant (each grant's remainder at each month's end), not derived from the other columns, so
-- the test recognised + breakage + deferred = paid granted (cumulative) checks the dating.

with grants as (
    select * from {{ ref('stg_ledger__grants') }}
),

draws as (
    -- Per grant, month and used or expired: daily sums, the latest draws one by one.
    select * from {{ ref('int_grant_draws_current') }}
),

last_month as (
    select
        greatest(
            date_trunc('month', {{ as_of_timestamp() }}, 'UTC')::date,
            (select max(draws.draw_month) from draws),
            (select max(grants.granted_month) from grants)
        ) as month
),

grant_month_draws as (
    select
        grant_entry_id,
        draw_month as month,
        sum(amount) as amount
    from draws
    group by grant_entry_id, draw_month
),

grant_totals as (
    -- Each drawn grant's last draw month and all it gave, from the monthly sums (the draws, the
    -- large input, are read once).
    select
        grant_entry_id,
        max(month) as last_draw_month,
        sum(amount) as drawn_in_all
    from grant_month_draws
    group by grant_entry_id
),

grant_months as (
    -- Each grant at the end of each month from its own to the last month in which it holds
    -- anything: once a grant is used up for good (nothing left after its last draw), every later
    -- month would add zero, so its rows stop at its last draw. Bounded by the open grants, not by
    -- grants x months of history (this table is rebuilt every hour).
    select
        grants.grant_entry_id,
        grants.account_id,
        grants.kind,
        grants.granted,
        series.month::date as month
    from grants
    left join grant_totals on grants.grant_entry_id = grant_totals.grant_entry_id
    cross join last_month
    cross join lateral generate_series(
        grants.granted_month,
        case
            when grants.granted = grant_totals.drawn_in_all then grant_totals.last_draw_month
            else last_month.month
        end,
        interval '1 month'
    ) as series (month)
),

grant_remaining as (
    select
        grant_months.account_id,
        grant_months.month,
        grant_months.kind,
        grant_months.granted - coalesce(sum(grant_month_draws.amount) over (
            partition by grant_months.grant_entry_id
            order by grant_months.month
            rows between unbounded preceding and current row
        ), 0) as remaining_at_month_end
    from grant_months
    left join grant_month_draws
        on
            grant_months.grant_entry_id = grant_month_draws.grant_entry_id
            and grant_months.month = grant_month_draws.month
),

first_grants as (
    select
        account_id,
        min(granted_month) as first_month
    from grants
    group by account_id
),

account_months as (
    -- Every account at the end of every month from its first grant to the last month.
    select
        first_grants.account_id,
        series.month::date as month
    from first_grants
    cross join last_month
    cross join lateral generate_series(first_grants.first_month, last_month.month, interval '1 month') as series (month)
),

remaining as (
    select
        account_months.account_id,
        account_months.month,
        coalesce(sum(grant_remaining.remaining_at_month_end) filter (where grant_remaining.kind = 'paid'), 0)
            as deferred,
        coalesce(sum(grant_remaining.remaining_at_month_end) filter (where grant_remaining.kind = 'free'), 0)
            as free_remaining
    from account_months
    left join grant_remaining
        on
            account_months.account_id = grant_remaining.account_id
            and account_months.month = grant_remaining.month
    group by account_months.account_id, account_months.month
),

granted as (
    select
        account_id,
        granted_month as month,
        coalesce(sum(granted) filter (where kind = 'paid'), 0) as paid_granted,
        coalesce(sum(granted) filter (where kind = 'free'), 0) as free_granted
    from grants
    group by account_id, granted_month
),

drawn as (
    select
        account_id,
        draw_month as month,
        coalesce(sum(amount) filter (where kind = 'paid' and not is_expiry), 0) as recognised,
        coalesce(sum(amount) filter (where kind = 'paid' and is_expiry), 0) as breakage,
        coalesce(sum(amount) filter (where kind = 'free' and not is_expiry), 0) as promotion_cost,
        coalesce(sum(amount) filter (where kind = 'free' and is_expiry), 0) as free_expired
    from draws
    group by account_id, draw_month
),

monthly as (
    select
        remaining.account_id,
        remaining.month,
        coalesce(granted.paid_granted, 0) as paid_granted,
        coalesce(drawn.recognised, 0) as recognised,
        coalesce(drawn.breakage, 0) as breakage,
        remaining.deferred,
        coalesce(granted.free_granted, 0) as free_granted,
        coalesce(drawn.promotion_cost, 0) as promotion_cost,
        coalesce(drawn.free_expired, 0) as free_expired,
        remaining.free_remaining
    from remaining
    left join granted on remaining.account_id = granted.account_id and remaining.month = granted.month
    left join drawn on remaining.account_id = drawn.account_id and remaining.month = drawn.month
)

select
    account_id,
    month,
    paid_granted,
    recognised,
    breakage,
    deferred,
    free_granted,
    promotion_cost,
    free_expired,
    free_remaining,
    sum(paid_granted) over to_date as paid_granted_to_date,
    sum(recognised) over to_date as recognised_to_date,
    sum(breakage) over to_date as breakage_to_date,
    {{ as_of_timestamp() }} as as_of
from monthly
window to_date as (partition by account_id order by month rows between unbounded preceding and current row)
