{#- The rows of a composite grain are unique: each combination of `columns` appears once.
    Rows returned are the combinations that appear more than once. Written here, not taken from
    a package: the project has none. -#}
{% test unique_combination(model, columns) %}

select
    {{ columns | join(', ') }},
    count(*) as row_count
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1

{% endtest %}
