"""Month-end assets (monthly partitions, UTC), downstream of the hourly usage and ledger assets.

* ``invoicing/sla_credits``: measures each deployment's availability for the month and posts its
  ``sla_credit`` entries (``sla.credit_sla``); depends on the probe hours, the lifecycle and
  ``fct_priced_usage`` (the base of a credit), and writes the ledger.
* ``invoicing/invoices``: issues the month's invoices (``invoices.issue_invoices``) after the SLA
  credits (a dependency, so one run of both does SLA first); depends on the ledger and on the
  usage the lines detail.

Both are re-runnable: a second run of a month measures, posts and issues nothing new.
"""

import dagster as dg

from billing_pipeline.core.asset_keys import ACCOUNT_LIFECYCLE, LEDGER
from billing_pipeline.core.clock import run_clock
from billing_pipeline.core.ownership import BILLING_OWNERS
from billing_pipeline.core.partitions import monthly_partitions
from billing_pipeline.ingestion.assets import METRIC_HOURS
from billing_pipeline.ingestion.probes import PROBE_DEPLOYMENT_HOURS
from billing_pipeline.invoicing.invoices import issue_invoices
from billing_pipeline.invoicing.months import parse_month
from billing_pipeline.invoicing.readiness import forced, month_readiness
from billing_pipeline.invoicing.sla import credit_sla
from billing_pipeline.resources.postgres import PostgresResource
from billing_pipeline.transform.assets import dbt_model_key

GROUP = "invoicing"

# Months are closed one at a time, in order (an invoice's opening balance is the previous closing).
ONE_MONTH_PER_RUN = dg.BackfillPolicy.multi_run(1)

SLA_CREDITS = dg.AssetKey(["invoicing", "sla_credits"])
INVOICES = dg.AssetKey(["invoicing", "invoices"])
INVOICE_LINES = dg.AssetKey(["invoicing", "invoice_lines"])
PRICED_USAGE = dbt_model_key("fct_priced_usage")


def partition_month(context: dg.AssetExecutionContext):
    return parse_month(context.partition_key[:7])


@dg.asset(
    key=SLA_CREDITS,
    group_name=GROUP,
    partitions_def=monthly_partitions,
    backfill_policy=ONE_MONTH_PER_RUN,
    kinds={"postgres"},
    owners=BILLING_OWNERS,
    deps=[PROBE_DEPLOYMENT_HOURS, PRICED_USAGE, ACCOUNT_LIFECYCLE, LEDGER],
    metadata={"table": "billing.sla_measurements"},
    description="Monthly availability per deployment and its sla_credit ledger entry, once (docs/rules/month-end.md).",
)
def sla_credits(context: dg.AssetExecutionContext, postgres: PostgresResource) -> dg.MaterializeResult:
    month = partition_month(context)
    with postgres.connect() as conn:
        result = credit_sla(conn, month)
    summary = result.as_dict()
    context.log.info(
        f"SLA {summary['month']}: {result.measured} deployment(s) measured, "
        f"{result.credits_posted} credit(s) posted ({summary['credited_amount']}), "
        f"{len(result.no_measurement)} without any measured minute"
    )
    return dg.MaterializeResult(
        metadata={
            "summary": dg.MetadataValue.json(summary),
            "dagster/row_count": result.measured,  # one measurement per deployment
            "credits_posted": result.credits_posted,
            "no_measurement": dg.MetadataValue.json(result.no_measurement),
        }
    )


@dg.multi_asset(
    name="invoices",
    specs=[
        dg.AssetSpec(
            INVOICES,
            group_name=GROUP,
            kinds={"postgres"},
            owners=BILLING_OWNERS,
            deps=[SLA_CREDITS, LEDGER, PRICED_USAGE, METRIC_HOURS],
            metadata={"table": "billing.invoices"},
            description="One immutable invoice per account and month, numbered gaplessly (docs/rules/month-end.md).",
        ),
        dg.AssetSpec(
            INVOICE_LINES,
            group_name=GROUP,
            kinds={"postgres"},
            owners=BILLING_OWNERS,
            deps=[SLA_CREDITS, LEDGER],
            metadata={"table": "billing.invoice_lines"},
            description="The invoices' lines, each naming the ledger entries it sums, with resource detail.",
        ),
    ],
    partitions_def=monthly_partitions,
    backfill_policy=ONE_MONTH_PER_RUN,
)
def invoices(context: dg.AssetExecutionContext, postgres: PostgresResource):
    month = partition_month(context)
    with postgres.connect() as conn:
        # Invoices are immutable: a month not settled yet is closed only after the wait, or forced.
        readiness = month_readiness(conn, month, run_clock(context))
        if not readiness.ready and not forced(context.run.tags):
            # A Failure, not an exception: the UI shows the reason, not a stack trace.
            raise dg.Failure(description=f"not closed: {readiness.reason}", allow_retries=False)
        if not readiness.ready:
            context.log.warning(f"closed by force (billing/force_close): {readiness.reason}")
        result = issue_invoices(conn, month, close_id=context.run.run_id)
    summary = result.as_dict()
    context.log.info(
        f"invoices {summary['month']}: {result.invoices_issued} issued "
        f"(numbers {result.first_number}-{result.last_number}), {result.entries} ledger entries, "
        f"{result.prior_period_lines} prior-period line(s), {result.unbilled_hours} unbilled hour(s)"
    )
    yield dg.MaterializeResult(
        asset_key=INVOICES,
        metadata={
            "summary": dg.MetadataValue.json(summary),
            "dagster/row_count": result.invoices_issued,
            "invoices_issued": result.invoices_issued,
        },
    )
    yield dg.MaterializeResult(
        asset_key=INVOICE_LINES,
        metadata={"dagster/row_count": result.lines, "lines": result.lines, "ledger_entries": result.entries},
    )
