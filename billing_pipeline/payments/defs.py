"""Dagster definitions of the payments domain.

* ``auto_topup_job``: charges saved cards off session for accounts at or below their auto top-up
  threshold, and finishes attempts a crashed run left behind (``payments.topup``).
* ``auto_topup_sensor`` (on by default): runs it after the ledger changes (a deduction lowers a
  balance) or ``fct_account_balances`` is materialised.
* ``auto_topup_retry_schedule`` (on by default): hourly, so a backoff that ends or a pending
  attempt gets handled even when no data moves.
"""


from typing import Optional

import dagster as dg

from billing_pipeline.errors import BillingError
from billing_pipeline.ledger.defs import balance_change_keys, ledger_changed
from billing_pipeline.orchestration.sensors import build_materialization_sensor
from billing_pipeline.orchestration.clock import parse_clock, run_clock
from billing_pipeline.payments.topup import run_auto_topup
from billing_pipeline.resources.postgres import PostgresResource
from billing_pipeline.resources.stripe import StripeResource


class TopupConfig(dg.Config):
    now: Optional[str] = None  # ISO clock; default the run's billing/now tag, else the wall clock
    account_id: Optional[str] = None


@dg.op(description="Charge saved cards for accounts at or below their auto top-up threshold, exactly once.")
def auto_topup(context: dg.OpExecutionContext, config: TopupConfig, postgres: PostgresResource,
               stripe: StripeResource):
    now = parse_clock(config.now) if config.now else run_clock(context)
    result = run_auto_topup(postgres.database_url, stripe, now, account_id=config.account_id)
    context.log.info(result.summary())
    for account, reason in result.skipped:
        context.log.info(f"{account}: skipped, {reason}")
    for account, detail in result.unresolved:
        context.log.warning(f"{account}: attempt left pending, resolved by the next run: {detail}")
    if result.charged:
        yield ledger_changed(result.summary(), credited=len(result.charged))
    yield dg.Output(None, metadata={
        "now": now.isoformat(),
        "charged": dg.MetadataValue.json([[a, str(amount), pi] for a, amount, pi in result.charged]),
        "recovered": dg.MetadataValue.json([list(r) for r in result.recovered]),
        "failed": dg.MetadataValue.json([list(f) for f in result.failed]),
        "paused": dg.MetadataValue.json(result.paused),
        "skipped": dg.MetadataValue.json([list(s) for s in result.skipped]),
    })
    if result.unresolved and not (result.charged or result.failed or result.recovered):
        # Nothing could be settled (e.g. Stripe unreachable): say so, so the run shows as failed.
        raise BillingError(
            "auto top-up: Stripe could not be reached for " + ", ".join(a for a, _ in result.unresolved)
            + "; the attempts stay pending and the next run finishes them.")


@dg.job(tags={"billing/domain": "payments"},
        description="Stripe auto top-up: off-session PaymentIntent on the saved card, credited exactly once.")
def auto_topup_job():
    auto_topup()


auto_topup_sensor = build_materialization_sensor(
    name="auto_topup_sensor",
    job=auto_topup_job,
    asset_keys=balance_change_keys,
    per_partition=False,
    description="Tops up low balances after the ledger changes or fct_account_balances is materialised.",
)

auto_topup_retry_schedule = dg.ScheduleDefinition(
    name="auto_topup_retry_schedule",
    job=auto_topup_job,
    cron_schedule="7 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Hourly pass: finishes pending attempts and retries after a backoff ends.",
)

defs = dg.Definitions(jobs=[auto_topup_job], sensors=[auto_topup_sensor], schedules=[auto_topup_retry_schedule])
