{#- The draws on the credit grants summed per grant, month counted in, kind of draw (used or
    expired) and UTC day written: what fct_credit_revenue and fct_grant_balances add up, instead
    of every draw ever made, every hour (the settlement draws from a grant every hour, about 720
    draws a grant-month; bench/revenue_bench.py). A draw is written with the later of its
    drawing entry and its grant (recorded_with_entry_id: a debt is paid when a grant is posted),
    so its day is that entry's created_at day. grant_draws is append-only, so a day once past
    never changes: as int_ledger_daily does, each build removes the last two days present and
    sums every draw written by an entry created since (macros/daily_rollups.sql). A full refresh
    sums everything. The marts read these sums through int_grant_draws_current, which adds the
    latest draws live. -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        pre_hook="{% if is_incremental() %}delete from {{ this }} where written_day >= {{ rollup_window_start(this, 'written_day') }}{% else %}select 1 /* full build */{% endif %}",
        indexes=[
            {'columns': ['written_day']},
            {'columns': ['grant_entry_id', 'draw_month', 'is_expiry', 'written_day'], 'unique': True},
        ],
    )
}}

{%- if is_incremental() %}
    {%- set since = rollup_window_start(this, 'written_day') %}
{%- else %}
    {%- set since = "'-infinity'::timestamptz" %}
{%- endif %}

with written as (
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
    date_trunc('day', created_at, 'UTC') as written_day,
    sum(amount) as amount,
    count(*) as draws
from written
group by 1, 2, 3, 4, 5, 6
