{#- Banker's rounding for numeric. PostgreSQL's round(numeric, n) rounds half away from
    zero; ledger-bound amounts are rounded half to even (docs/rules/units.md). Exact: the only
    case that differs is a remainder of exactly one half, detected on the scaled value and
    sent to the even neighbour. (Identical aggregates in the repeated expression are computed
    once by PostgreSQL.) -#}
{% macro round_half_even(expression, scale=6) -%}
    {%- set factor = "1" ~ ("0" * scale) -%}
    {%- set x = "((" ~ expression ~ ")::numeric)" -%}
    {%- set v = "(" ~ x ~ " * " ~ factor ~ ")" -%}
    round(
        case
            when abs({{ v }} - trunc({{ v }})) = 0.5
                then (trunc({{ v }}) + case when mod(trunc({{ v }}), 2) = 0 then 0 else sign({{ x }}) end) / {{ factor }}
            else {{ x }}
        end, {{ scale }})
{%- endmacro %}
