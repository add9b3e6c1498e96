{#- Views are re-created only when what they would be has changed.

    dbt's own view materialization re-creates every view on every build: a new view under a
    temporary name, two renames and a DROP ... CASCADE of the old one. The hourly runs build the
    same views every hour, so that was work for nothing (24 views an hour: a view's node took
    35 ms, 22 ms with the swap skipped, measured on a 3-account platform for issue 24), and each
    rename takes an ACCESS EXCLUSIVE lock that waits for, then blocks, every analyst's query on
    that view.

    What a view is depends on its compiled SQL, its grants, dbt's version and the columns of the
    relations it reads (a `select *` of another relation is expanded when the view is created).
    Their digest is kept as the view's comment (`view_digest`): while it matches, the view is
    left as it is, and the check itself is the model's 'main' statement (dbt reports it as
    `SELECT 1`); otherwise dbt's own materialization builds the view and the digest is written.
    A full refresh always rebuilds. A view that is missing (an upstream view rebuilt by dbt drops
    its dependents by CASCADE), is not a view, or carries another comment is rebuilt: whatever
    goes wrong, the outcome is dbt's usual one. -#}

{% materialization view, adapter='postgres' %}
  {%- set target_relation = this.incorporate(type='view') -%}
  {%- set digest_sql = view_digest(sql) -%}
  {%- call statement('main', fetch_result=True) -%}
    with wanted as ({{ digest_sql }})
    select wanted.digest,
           coalesce((
               select obj_description(c.oid, 'pg_class') = wanted.digest
               from pg_class c
               where c.oid = to_regclass({{ dbt.string_literal(target_relation.include(database=false).render()) }})
                 and c.relkind = 'v'
           ), false) as unchanged
    from wanted
  {%- endcall -%}
  {%- set row = load_result('main')['data'][0] -%}
  {%- if row[1] and not should_full_refresh() -%}
    {#- Grants are still re-applied (a no-op when they are as configured), as every build does:
        a role re-created since the view was keeps its rights on it. -#}
    {%- set grant_config = config.get('grants') -%}
    {%- if grant_config -%}
      {%- do apply_grants(target_relation, grant_config, should_revoke=True) -%}
      {%- do adapter.commit() -%}
    {%- endif -%}
    {{ return({'relations': [target_relation]}) }}
  {%- endif -%}
  {%- set built = dbt.materialization_view_default() -%}
  {%- call statement('view_digest') -%}
    comment on view {{ target_relation }} is {{ dbt.string_literal(row[0]) }}
  {%- endcall -%}
  {%- do adapter.commit() -%}
  {{ return(built) }}
{% endmaterialization %}


{#- A query of one row, `digest`: the md5 of everything a view's definition depends on. The
    columns of the relations it reads are read from the catalog (a relation missing so far
    contributes nothing, and its appearance changes the digest). -#}
{% macro view_digest(compiled_sql) -%}
  {%- set read = [] -%}
  {%- for unique_id in model.depends_on.nodes -%}
    {%- set node = graph.nodes.get(unique_id) or graph.sources.get(unique_id) -%}
    {%- if node and node.relation_name -%}
      {%- do read.append(node.relation_name) -%}
    {%- endif -%}
  {%- endfor -%}
  {%- set stated = ['view digest v1', dbt_version, tojson(config.get('grants')), compiled_sql] | join('\n') -%}
  select md5({{ dbt.string_literal(local_md5(stated)) }} || coalesce((
      select string_agg(a.attrelid::regclass::text || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod),
                        ',' order by a.attrelid::regclass::text, a.attnum)
      from pg_attribute a
      where a.attrelid = any(array[
          {%- for relation in read | sort %}to_regclass({{ dbt.string_literal(relation) }}){{ ', ' if not loop.last }}{% endfor -%}
      ]::regclass[])
        and a.attnum > 0 and not a.attisdropped
  ), '')) as digest
{%- endmacro %}
