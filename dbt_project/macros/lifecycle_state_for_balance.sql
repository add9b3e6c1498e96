{#- The lifecycle state a balance alone implies (docs/rules/lifecycle.md). The rule's owner is
    billing_pipeline/lifecycle/machine.py (state_for_balance / state_sql); this macro renders the
    same SQL, and tests/unit/test_lifecycle_rule.py fails if the two ever differ. -#}
{% macro lifecycle_state_for_balance(balance, threshold) -%}
CASE WHEN {{ balance }} <= 0 THEN 'grace_period' WHEN {{ balance }} <= {{ threshold }} THEN 'low_balance' ELSE 'healthy' END
{%- endmacro %}
