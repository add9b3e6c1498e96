"""Dagster definitions of the payments domain: Stripe auto top-up as an asset of the cycle.

* ``payments/auto_topups`` (downstream of the ledger's settlement): charges saved cards off
  session for accounts at or below their auto top-up threshold, and finishes attempts a crashed
  run left behind (``payments.topup``). A declined card does not stop the cycle: the asset records
  what happened and its check ``every_topup_settled`` fails, naming the accounts, while alerts and
  the lifecycle still run after it. Without ``STRIPE_API_KEY`` the step is skipped with the reason
  (metadata ``skipped``; the checks warn, naming the accounts waiting; nothing is recorded). Its check
  ``one_payment_intent_per_attempt`` lists the PaymentIntents of the customers charged in the last
  week and fails, naming the attempt keys and PaymentIntents, if an attempt was charged twice
  (or if a customer's PaymentIntents could not be listed).
* ``auto_topup_job``: the asset alone. ``auto_topup_retry_schedule`` (on by default) runs it
  hourly, so a backoff that ends or a pending attempt gets handled even when no data moves; it
  skips with the reason while ``STRIPE_API_KEY`` is not set.
"""

import dagster as dg

from billing_pipeline.core.asset_keys import AUTO_TOPUPS, GRANT_EXPIRY, LEDGER
from billing_pipeline.core.clock import CLOCK_TAG, run_clock
from billing_pipeline.core.errors import ConfigurationError
from billing_pipeline.core.ownership import BILLING_OWNERS
from billing_pipeline.core.partitions import latest_hour_of
from billing_pipeline.core.runs import JOB_TAGS
from billing_pipeline.payments.topup import DUPLICATE_LOOKBACK, run_auto_topup
from billing_pipeline.resources.postgres import PostgresResource
from billing_pipeline.resources.stripe import StripeResource


@dg.asset(
    key=AUTO_TOPUPS,
    # After expiry: a balance that expired credits took below the threshold is topped up this hour.
    deps=[latest_hour_of(LEDGER), GRANT_EXPIRY],
    group_name="payments",
    kinds={"stripe", "postgres"},
    owners=BILLING_OWNERS,
    description="Stripe auto top-ups (billing.topup_attempts): an attempt row is committed before Stripe is "
    "called, and the PaymentIntent is credited to the ledger exactly once.",
    check_specs=[
        dg.AssetCheckSpec(
            "every_topup_settled",
            asset=AUTO_TOPUPS,
            description="Every account that needed an auto top-up was charged, or its "
            "card's decline was recorded and told to the customer.",
        ),
        dg.AssetCheckSpec(
            "one_payment_intent_per_attempt",
            asset=AUTO_TOPUPS,
            description="Stripe holds at most one PaymentIntent per attempt key, for every customer with an "
            f"attempt charged in the last {DUPLICATE_LOOKBACK.days} days (a second one is a double charge to refund).",
        ),
    ],
)
def auto_topups(context: dg.AssetExecutionContext, postgres: PostgresResource, stripe: StripeResource):
    now = run_clock(context)
    try:
        result = run_auto_topup(postgres.database_url, stripe, now)
    except ConfigurationError as exc:
        # Only the top-ups need Stripe: the integration is not configured, so the step is skipped
        # with the reason (not failed) and the cycle goes on. The accounts waiting are named, as a
        # warning: nobody was charged, and nothing was recorded that a later run must undo.
        context.log.warning(f"skipped: {exc}")
        yield dg.MaterializeResult(
            metadata={"now": now.isoformat(), "dagster/row_count": 0, "skipped": f"skipped: {exc}"}
        )
        yield dg.AssetCheckResult(
            check_name="every_topup_settled",
            passed=False,
            description=f"skipped: {exc}",
            severity=dg.AssetCheckSeverity.WARN,
        )
        yield dg.AssetCheckResult(
            check_name="one_payment_intent_per_attempt",
            passed=False,
            description=f"not checked: {exc}",
            severity=dg.AssetCheckSeverity.WARN,
        )
        return
    context.log.info(result.summary())
    for account, reason in result.skipped:
        context.log.info(f"{account}: skipped, {reason}")
    for account, detail in result.unresolved:
        context.log.warning(f"{account}: attempt left pending, resolved by the next run: {detail}")
    yield dg.MaterializeResult(
        metadata={
            "now": now.isoformat(),
            "dagster/row_count": len(result.charged) + len(result.recovered),  # top-ups posted to the ledger
            "charged": dg.MetadataValue.json([[a, str(amount), pi] for a, amount, pi in result.charged]),
            "recovered": dg.MetadataValue.json([list(r) for r in result.recovered]),
            "failed": dg.MetadataValue.json([list(f) for f in result.failed]),
            "paused": dg.MetadataValue.json(result.paused),
            "skipped": dg.MetadataValue.json([list(s) for s in result.skipped]),
            "pending": dg.MetadataValue.json([list(u) for u in result.unresolved]),
            "charged_twice": dg.MetadataValue.json([list(d) for d in result.duplicates]),
        }
    )
    for account, key, intents in result.duplicates:
        context.log.error(f"{account}: attempt {key} has {len(intents)} PaymentIntents: {', '.join(intents)}")
    unsettled = [f"{a}: {why}" for a, why in result.unresolved]
    yield dg.AssetCheckResult(
        check_name="every_topup_settled",
        passed=not unsettled,
        severity=dg.AssetCheckSeverity.ERROR,
        description=None if not unsettled else "pending, finished by the next run: " + "; ".join(unsettled),
    )
    twice = [f"{a}: {key} charged {len(pis)} times ({', '.join(pis)})" for a, key, pis in result.duplicates]
    unchecked = [f"{a}: not checked, {why}" for a, why in result.unchecked]
    yield dg.AssetCheckResult(
        check_name="one_payment_intent_per_attempt",
        passed=not twice and not unchecked,
        severity=dg.AssetCheckSeverity.ERROR,
        description=None if not (twice or unchecked) else "; ".join(twice + unchecked),
    )


auto_topup_job = dg.define_asset_job(
    "auto_topup_job",
    selection=dg.AssetSelection.assets(auto_topups),
    tags=JOB_TAGS,
    description="Stripe auto top-up: off-session PaymentIntent on the saved card, credited exactly once.",
)


@dg.schedule(
    name="auto_topup_retry_schedule",
    job=auto_topup_job,
    cron_schedule="7 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Hourly pass: finishes pending attempts and retries after a backoff ends. Skips, with the "
    "reason, while STRIPE_API_KEY is not set.",
)
def auto_topup_retry_schedule(context: dg.ScheduleEvaluationContext, stripe: StripeResource):
    missing = stripe.missing_configuration()
    if missing:
        return dg.SkipReason(f"skipped: {missing}: no auto top-up can be charged")
    at = context.scheduled_execution_time
    return dg.RunRequest(run_key=f"auto_topups@{at.isoformat()}", tags={CLOCK_TAG: at.isoformat()})


defs = dg.Definitions(assets=[auto_topups], jobs=[auto_topup_job], schedules=[auto_topup_retry_schedule])
