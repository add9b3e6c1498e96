"""The dbt models as Dagster assets, one hour or a range of hours per run.

The partition window goes to dbt in the environment (``window_env``), not in ``--vars``: dbt
hashes its vars into its parse state, and a new window every run would make it re-parse the whole
project every run. Incremental models rebuild exactly those hours. Each invocation gets its own
target folder, seeded with the database's parse state and removed afterwards
(``invocation_target``). dbt tests surface as asset checks. dbt reaches the same database as
the ``postgres`` resource (BILLING_DATABASE_URL), through DBT_PG_* set for the subprocess only.
"""

import dagster as dg
from dagster_dbt import dbt_assets, get_asset_key_for_model, get_asset_keys_by_output_name_for_source

from billing_pipeline.core.partitions import hourly_partitions, monthly_partitions
from billing_pipeline.resources import PostgresResource
from billing_pipeline.transform.project import (
    BUILD_ARGS,
    dbt_environment,
    dbt_project,
    ensure_manifest,
    invocation_target,
    manifest_for_database,
    temporary_environment,
    window_env,
)
from billing_pipeline.transform.resources import BillingDbtCliResource
from billing_pipeline.transform.translator import AFTER_INVOICES, AFTER_LEDGER, BillingDbtTranslator

# Three dbt invocations, one per stage of the money path (transform/translator.py names the same
# stages as asset groups), declared here rather than the several subsets Dagster would cut out of
# one definition to break the cycle dbt -> ledger -> dbt:
# * the usage models (pricing, reconciliation, usage charges) run before the settlement;
# * the models that read the ledger or the persisted lifecycle (balances, runway) run after the
#   settlement and the lifecycle, in the same hourly run;
# * the models that read the month-end tables (the issued invoices, SLA measurements, the
#   unbilled-usage estimate) run in the monthly job after the invoices, so no hourly asset
#   depends on a monthly one.
# The manifest as it names the database the pipeline writes (storage metadata, row counts).
MANIFEST = manifest_for_database(ensure_manifest())


def _build(context: dg.AssetExecutionContext, dbt: BillingDbtCliResource, postgres: PostgresResource):
    window = context.partition_time_window
    args = list(BUILD_ARGS)
    url = postgres.database_url
    window_environment = temporary_environment(window_env(window.start, window.end))
    # The events are held until dbt has finished, to add the row counts (below). A failed build
    # still reports what it did (the models built, the failed tests as failed checks), then
    # fails the step; its invocation folder stays for its dbt.log.
    events, failure = [], None
    try:
        with dbt_environment(url), window_environment, invocation_target(url) as target:
            for event in dbt.build_events(args, context=context, target_path=target):
                events.append(event)
    except Exception as exc:
        failure = exc
    with postgres.connect() as conn:
        yield from with_row_counts(conn, events)
    if failure is not None:
        raise failure


ROW_COUNT = "dagster/row_count"


def with_row_counts(conn, events: list) -> list:
    """``events`` with each table model's row count added, as PostgreSQL's statistics know it.

    Not dagster-dbt's ``fetch_row_counts``: that runs ``count(*)`` over every table the build
    touched, every hour, so its cost grows with the history (minutes over a year of priced
    usage). The statistics are exact here: dbt's connections have closed, and a backend flushes
    its counts when it exits. Views have no rows of their own and get no count.
    """
    relations = {}  # event index -> (schema, table)
    for i, event in enumerate(events):
        unique_id = (getattr(event, "metadata", None) or {}).get("unique_id")
        unique_id = getattr(unique_id, "value", unique_id)
        node = MANIFEST["nodes"].get(str(unique_id)) if unique_id else None
        if node and node["config"].get("materialized") in ("table", "incremental"):
            relations[i] = (node["schema"], node.get("alias") or node["name"])
    if not relations:
        return events
    rows = conn.execute(
        "SELECT n.nspname, c.relname, coalesce(s.n_live_tup, c.reltuples::bigint) "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid "
        "WHERE c.relkind IN ('r', 'p') AND (n.nspname, c.relname) IN "
        "(SELECT * FROM unnest(%s::text[], %s::text[]))",
        ([schema for schema, _ in relations.values()], [table for _, table in relations.values()]),
    ).fetchall()
    counts = {(schema, table): count for schema, table, count in rows}
    out = list(events)
    for i, relation in relations.items():
        if relation in counts:
            out[i] = events[i].with_metadata({**events[i].metadata, ROW_COUNT: int(counts[relation])})
    return out


@dbt_assets(
    manifest=MANIFEST,
    project=dbt_project,
    dagster_dbt_translator=BillingDbtTranslator(),
    partitions_def=hourly_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    exclude=f"{AFTER_LEDGER} {AFTER_INVOICES}",
    name="dbt_usage_models",
)
def dbt_usage_models(context: dg.AssetExecutionContext, dbt: BillingDbtCliResource, postgres: PostgresResource):
    """Price and reconcile the usage of the run's hours: what the ledger settles (``dbt build``)."""
    yield from _build(context, dbt, postgres)


@dbt_assets(
    manifest=MANIFEST,
    project=dbt_project,
    dagster_dbt_translator=BillingDbtTranslator(),
    partitions_def=hourly_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    select=AFTER_LEDGER,
    exclude=AFTER_INVOICES,
    name="dbt_ledger_models",
)
def dbt_ledger_models(context: dg.AssetExecutionContext, dbt: BillingDbtCliResource, postgres: PostgresResource):
    """Balances and runway, from the settled ledger and the lifecycle (``dbt build``)."""
    yield from _build(context, dbt, postgres)


@dbt_assets(
    manifest=MANIFEST,
    project=dbt_project,
    dagster_dbt_translator=BillingDbtTranslator(),
    partitions_def=monthly_partitions,
    backfill_policy=dg.BackfillPolicy.multi_run(1),  # as the month-end assets: one month per run
    select=AFTER_INVOICES,
    name="dbt_invoicing_models",
)
def dbt_invoicing_models(context: dg.AssetExecutionContext, dbt: BillingDbtCliResource, postgres: PostgresResource):
    """The issued invoices and their lines, the SLA availability and the unbilled-usage estimate, from the
    month-end tables (``dbt build``, after the month's invoices). Views and whole tables: the month's
    window bounds nothing they compute."""
    with postgres.connect() as conn:
        missing = [
            f"{schema}.{name}"
            for schema, name in _hourly_relations_read_at_month_end()
            if conn.execute("SELECT to_regclass(%s)", (f'"{schema}"."{name}"',)).fetchone()[0] is None
        ]
    if missing:
        # A month closed before any hourly cycle built the usage and ledger models (a new database):
        # the invoices are issued (the Python assets above); the analysts' marts over them wait for
        # the hourly models they join, and the next close builds them. Nothing is half-built.
        context.log.warning(
            f"skipped: the month-end marts read hourly models not built yet on this database ({', '.join(missing)}); "
            "they are built by the next close after an hourly cycle has run."
        )
        return
    yield from _build(context, dbt, postgres)


def _hourly_relations_read_at_month_end() -> list[tuple[str, str]]:
    """The (schema, relation) of every model outside the month-end marts that those marts read."""
    children = MANIFEST["child_map"]
    todo = [uid for uid, source in MANIFEST["sources"].items() if source["source_name"] == "invoicing"]
    inside: set[str] = set()
    while todo:
        for child in children.get(todo.pop(), []):
            if child.startswith("model.") and child not in inside:
                inside.add(child)
                todo.append(child)
    parents = {p for uid in inside for p in MANIFEST["nodes"][uid]["depends_on"]["nodes"] if p.startswith("model.")}
    return sorted(
        (MANIFEST["nodes"][uid]["schema"], MANIFEST["nodes"][uid].get("alias") or MANIFEST["nodes"][uid]["name"])
        for uid in parents - inside
    )


DBT_MODELS = [dbt_usage_models, dbt_ledger_models, dbt_invoicing_models]


def dbt_model_key(model_name: str) -> dg.AssetKey:
    """The asset key of a dbt model (the translator's, from the one manifest both share)."""
    return get_asset_key_for_model([dbt_usage_models], model_name)


def dbt_source_keys(source_name: str) -> dict[str, dg.AssetKey]:
    return get_asset_keys_by_output_name_for_source([dbt_usage_models], source_name)
