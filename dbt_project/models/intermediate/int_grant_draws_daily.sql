{#- The draws on the credit grants summed per grant, month counted in, kind of draw (used or
    expired) and UTC day written: what fct_credit_revenue and fct_grant_balances add up, instead
    of every draw ever made, every hour (the settlement draws from a grant every hour, about 720
    draws a grant-month; bench/revenue_bench.py). A draw is written with the later of its
    drawing entry and its grant (recorded_with_entry_id: a debt is paid when a grant is posted),
    so its day is that entry's created_at day. grant_draws is append-only, so a day once past
    never changes: as int_ledger_daily does, each build removes the last two days present and
    sums every draw written by an entry created after the last day kept, found through the
    ledger's index on created_at and the draws' indexes on their two entries. A full refresh
    sums everything. -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        pre_hook="{% if is_incremental() %}delete from {{ this }} where written_day >= (select max(written_day) - interval '1 day' from {{ this }}){% else %}select 1 /* full build */{% endif %}",
        indexes=[
            {'columns': ['written_day']},
            {'columns': ['grant_entry_id', 'draw_month', 'is_expiry', 'written_day'], 'unique': True},
        ],
    )
}}

with written_by as (
    -- The entries whose postings wrote the draws to sum.
    select
        transaction_id,
        created_at
    from {{ ref('stg_ledger__credit_transactions') }}
    {% if is_incremental() -%}
    where created_at >= (
        select coalesce(max(written_day) + interval '1 day', '-infinity'::timestamptz) from {{ this }}
    )
    {%- endif %}
),

draws as (
    select * from {{ ref('stg_ledger__grant_draws') }}
),

written as (
    -- Each draw with the entry it was written with, the later of its two entries, joined on
    -- each entry column separately so that both indexes serve the incremental build.
    select
        draws.draw_id,
        written_by.created_at
    from written_by
    inner join draws on written_by.transaction_id = draws.drawing_entry_id
    where draws.drawing_entry_id >= draws.grant_entry_id
    union all
    select
        draws.draw_id,
        written_by.created_at
    from written_by
    inner join draws on written_by.transaction_id = draws.grant_entry_id
    where draws.grant_entry_id > draws.drawing_entry_id
)

select
    dated.grant_entry_id,
    dated.account_id,
    dated.kind,
    dated.draw_month,
    dated.is_expiry,
    date_trunc('day', written.created_at, 'UTC') as written_day,
    sum(dated.amount) as amount,
    count(*) as draws
from written
inner join {{ ref('int_grant_draws_dated') }} as dated on written.draw_id = dated.draw_id
group by 1, 2, 3, 4, 5, 6
