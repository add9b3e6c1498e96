{#- Pre-hook of fct_priced_usage: an hour with usage and no price in force stops the build
    with a message naming resource, machine type and hour. Never priced at zero. -#}
{% macro assert_prices_in_force() -%}
    {%- if execute -%}
        {%- set missing = ref('int_usage_prices_missing') -%}
        {%- set query -%}
            select message from {{ missing }}
            where {{ in_hour_window('hour') }}
            order by hour, resource, machine_type
            limit 20
        {%- endset -%}
        {%- set rows = run_query(query) -%}
        {%- if rows and rows | length > 0 -%}
            {%- set lines = [] -%}
            {%- for row in rows -%}{%- do lines.append("  - " ~ row[0]) -%}{%- endfor -%}
            {{ exceptions.raise_compiler_error(
                "Usage without a price in force (never billed at zero); billing of these hours is blocked:\n"
                ~ lines | join("\n")
                ~ "\nAdd or fix billing.pricing_configs rows covering these hours (see "
                ~ ref('int_pricing_configs_checked') ~ " for rejected rows), then re-run the partitions."
            ) }}
        {%- endif -%}
    {%- endif -%}
    select 1 /* every usage hour in the window has a price in force */
{%- endmacro %}
