{% macro grant_draws_written_since(ledger, draws, dated, since) -%}
{#- The grant draws written by the ledger entries created at or after `since` (a SQL expression),
    as `dated` (int_grant_draws_dated) has them, each with that entry's created_at. A draw is
    written with the later of its drawing entry and its grant (a debt is paid when a grant is
    posted; a reversal gives back when it is posted). Joined on each entry column separately, so
    that a recent window is read through the ledger's index on created_at and the draws' indexes
    on their two entries. -#}
    select
        dated.grant_entry_id,
        dated.account_id,
        dated.kind,
        dated.draw_month,
        dated.is_expiry,
        dated.amount,
        written.created_at
    from (
        select
            draws.draw_id,
            written_by.created_at
        from {{ ledger }} as written_by
        inner join {{ draws }} as draws on written_by.transaction_id = draws.drawing_entry_id
        where written_by.created_at >= {{ since }} and draws.drawing_entry_id >= draws.grant_entry_id
        union all
        select
            draws.draw_id,
            written_by.created_at
        from {{ ledger }} as written_by
        inner join {{ draws }} as draws on written_by.transaction_id = draws.grant_entry_id
        where written_by.created_at >= {{ since }} and draws.grant_entry_id > draws.drawing_entry_id
    ) as written
    inner join {{ dated }} as dated on written.draw_id = dated.draw_id
{%- endmacro %}

{% macro utc_days_after(timestamp, days) -%}
{#- `timestamp` (timestamptz) moved by `days` calendar days in UTC, whatever the session's time
    zone (interval arithmetic on timestamptz counts days in the session's zone, so a daylight
    saving change would move a midnight by an hour). -#}
(({{ timestamp }}) at time zone 'UTC' + interval '{{ days }} day') at time zone 'UTC'
{%- endmacro %}

{% macro rollup_window_start(relation, day_column) -%}
{#- Where an incremental daily rollup's window starts: the second-to-last UTC day it holds (each
    build deletes and re-sums its last two days: an entry committed just after midnight may carry
    the earlier day), or -infinity when it holds nothing or does not exist yet. Read when the SQL
    is rendered and written in as a constant, not as a subquery: PostgreSQL plans a comparison with a value it
    cannot see by a default share of the table, and in bench/revenue_bench.py's version of the
    marts' live read it scanned every draw instead of reading the window through the index. The
    pre-hook's delete and the select each render it just before they run, from the same table
    (one build at a time: the money lane), so they agree. -#}
    {%- set seconds = none -%}
    {%- if execute and load_relation(relation) is not none -%}
        {%- set found = run_query(
            "select extract(epoch from " ~ utc_days_after("max(" ~ day_column ~ ")", -1) ~ ")::bigint from " ~ relation
        ) -%}
        {%- set seconds = found.columns[0].values()[0] -%}
    {%- endif -%}
    {%- if seconds is not none and seconds % 86400 != 0 -%}
        {{ exceptions.raise_compiler_error(relation ~ "." ~ day_column ~ " holds a value that is not a UTC midnight") }}
    {%- endif -%}
    {%- if seconds is not none -%}
        to_timestamp({{ seconds | int }})
    {%- else -%}
        '-infinity'::timestamptz
    {%- endif -%}
{%- endmacro %}
