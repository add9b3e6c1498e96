{#- The Dagster partition window [min_hour, max_hour). Dagster passes it in the environment
    (BILLING_DBT_MIN_HOUR, BILLING_DBT_MAX_HOUR), read only when executing: a window in --vars
    changes dbt's vars hash and forces a full re-parse of the project on every run, and an
    env_var() read while parsing is recorded and re-parses the files that read it. By hand,
    --vars '{"min_hour": ..., "max_hour": ...}' still works. Without either, every hour is in
    the window (full build). -#}

{% macro window_bounds() -%}
    {%- set lo = var('min_hour', none) -%}
    {%- set hi = var('max_hour', none) -%}
    {%- if lo is none and hi is none and execute -%}
        {%- set lo = env_var('BILLING_DBT_MIN_HOUR', '') or none -%}
        {%- set hi = env_var('BILLING_DBT_MAX_HOUR', '') or none -%}
    {%- endif -%}
    {%- if (lo is none) != (hi is none) -%}
        {{ exceptions.raise_compiler_error("Pass both min_hour and max_hour (or neither); got min_hour=" ~ lo ~ ", max_hour=" ~ hi) }}
    {%- endif -%}
    {{ return((lo, hi)) }}
{%- endmacro %}

{#- SQL predicate: column inside the window (true without a window). -#}
{% macro in_hour_window(column) -%}
    {%- set lo, hi = window_bounds() -%}
    {%- if lo is none -%}
        true
    {%- else -%}
        ({{ column }} >= '{{ lo }}'::timestamptz and {{ column }} < '{{ hi }}'::timestamptz)
    {%- endif -%}
{%- endmacro %}

{#- SQL predicate: column inside the UTC days (or months) the window touches, for rollups
    that are rebuilt a whole day/month at a time. -#}
{% macro in_window_periods(column, period) -%}
    {%- set lo, hi = window_bounds() -%}
    {%- if lo is none -%}
        true
    {%- else -%}
        ({{ column }} >= date_trunc('{{ period }}', '{{ lo }}'::timestamptz, 'UTC')
         and {{ column }} < date_trunc('{{ period }}', '{{ hi }}'::timestamptz - interval '1 microsecond', 'UTC') + interval '1 {{ period }}')
    {%- endif -%}
{%- endmacro %}

{#- Pre-hook of the incremental models: remove the rows of the window they are about to
    rebuild, so an hour that now has fewer rows (a late rental turning a charge into covered
    usage) leaves nothing stale behind. -#}
{% macro delete_window(column, period=none) -%}
    {%- if is_incremental() -%}
        delete from {{ this }} where
        {%- if period is none %} {{ in_hour_window(column) }}
        {%- else %} {{ in_window_periods(column, period) }}
        {%- endif -%}
    {%- else -%}
        select 1 /* full build: nothing to delete */
    {%- endif -%}
{%- endmacro %}

{#- The clock balances are computed at: var as_of, else the end of the window, else now(). -#}
{% macro as_of_timestamp() -%}
    {%- set as_of = var('as_of', none) -%}
    {%- set lo, hi = window_bounds() -%}
    {%- if as_of is not none -%}
        '{{ as_of }}'::timestamptz
    {%- elif hi is not none -%}
        '{{ hi }}'::timestamptz
    {%- else -%}
        now()
    {%- endif -%}
{%- endmacro %}

{#- Rendered timestamps in messages: always UTC, ISO 8601. -#}
{% macro iso_utc(column) -%}
    to_char({{ column }} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI"Z"')
{%- endmacro %}

{#- dbt's own get_where_subquery, plus one marker: a data test configured with
    `where: "__hour_window__"` is filtered to the rows of the run's hours (column `hour`);
    `where: "__hour_window__(created_at)"` does the same on another timestamp column.
    dbt renders a test's `where` while parsing, when the window is not known yet; the marker is
    replaced here, when the test executes. -#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- if where == '__hour_window__' -%}
        {%- set where = in_hour_window('hour') -%}
    {%- elif where is string and where.startswith('__hour_window__(') and where.endswith(')') -%}
        {%- set where = in_hour_window(where[16:-1] | trim) -%}
    {%- endif -%}
    {%- if where -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ where }}) dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}
