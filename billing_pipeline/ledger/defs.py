"""Dagster definitions of the ledger domain: usage settlement as an hourly asset.

* ``ledger/credit_transactions`` (hourly partitions, ranged runs): settles the hours of the run
  from ``fct_usage_charges`` into the ledger, differences only (``ledger.deduction``). Its
  materialization of an hour means "the ledger holds what that hour owes"; its metadata carries
  what was posted and the ledger's chain heads at that moment (``chain_heads_sha256`` over all
  of them, and the heads themselves for up to 1,000 accounts): a checkpoint outside the billing
  database.
* Asset checks on it: the ledger equals ``fct_usage_charges`` for the run's hours, and the
  balance cache (``billing.credits``) equals the ledger's sum for every account.
* ``ledger/grant_expiry`` (after the settlement, unpartitioned: it acts at the run's clock): one
  ``grant_expiry`` entry per grant past its ``expires_at`` with credits left (``ledger.expiry``),
  with the check ``balance_equals_open_grants_minus_debt`` (the grants' identity, per account: docs/rules/ledger.md).
* ``credit_usage_job``: the settlement alone, for one hour or a range (docs/rules/ledger.md).
"""

import dagster as dg

from billing_pipeline.core.asset_keys import GRANT_EXPIRY, LEDGER
from billing_pipeline.core.clock import run_clock
from billing_pipeline.core.hours import Hour
from billing_pipeline.core.ownership import BILLING_OWNERS
from billing_pipeline.core.partitions import hourly_partitions, latest_hour_of
from billing_pipeline.core.runs import JOB_TAGS
from billing_pipeline.ledger.checkpoint import chain_heads, chain_heads_digest
from billing_pipeline.ledger.deduction import CHARGES_SCHEMA, CHARGES_TABLE, settle_priced_usage
from billing_pipeline.ledger.expiry import expire_due_grants, grant_identity_mismatches
from billing_pipeline.ledger.grant_tables import grant_table_specs
from billing_pipeline.ledger.keys import usage_hour_sql
from billing_pipeline.resources.postgres import PostgresResource
from billing_pipeline.transform.assets import dbt_model_key

USAGE_CHARGES = dbt_model_key("fct_usage_charges")
CHAIN_HEADS_SHOWN = 1000

# Per account, hour and usage kind: what the mart says is owed against what the ledger holds.
_LEDGER_VS_CHARGES = f"""
WITH owed AS (
    SELECT account_id, hour, usage_kind, amount FROM {CHARGES_SCHEMA}.{CHARGES_TABLE}
    WHERE hour >= %(start)s AND hour < %(end)s
      AND account_id IN (SELECT id FROM billing.accounts)
), settled AS (
    SELECT account_id, {usage_hour_sql()} AS hour, reference ->> 'usage_kind' AS usage_kind,
           -sum(amount) AS amount
    FROM billing.credit_transactions
    -- The run's hours as the ledger spells them (Hour.text), so that the partial index on
    -- reference ->> 'hour' finds them; a cast of every entry's hour read the whole ledger.
    WHERE type IN ('usage_deduction', 'reversal') AND reference ? 'usage_kind'
      AND reference ->> 'hour' = ANY (%(hour_texts)s::text[])
    GROUP BY 1, 2, 3
)
SELECT coalesce(o.account_id, s.account_id), coalesce(o.hour, s.hour), coalesce(o.usage_kind, s.usage_kind),
       coalesce(o.amount, 0), coalesce(s.amount, 0)
FROM owed o FULL JOIN settled s USING (account_id, hour, usage_kind)
WHERE coalesce(o.amount, 0) <> coalesce(s.amount, 0)
ORDER BY 2, 1, 3
LIMIT 20
"""

# The cache against the balance the ledger itself carries on each account's newest entry
# (balance_after), one index lookup per account. Summing every entry ever posted, every hour,
# grew with the history; that the balances are the sums of the entries, and the hash chain,
# are what `billing verify` checks over the whole ledger.
_CACHE_VS_LEDGER = """
SELECT a.id, coalesce(c.balance, 0), coalesce(t.balance_after, 0)
FROM billing.accounts a
LEFT JOIN billing.credits c ON c.account_id = a.id
LEFT JOIN LATERAL (
    SELECT balance_after FROM billing.credit_transactions t
    WHERE t.account_id = a.id ORDER BY account_seq DESC LIMIT 1
) t ON true
WHERE coalesce(c.balance, 0) <> coalesce(t.balance_after, 0)
ORDER BY 1
LIMIT 20
"""


@dg.asset(
    key=LEDGER,
    deps=[USAGE_CHARGES],
    partitions_def=hourly_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="ledger",
    kinds={"postgres"},
    owners=BILLING_OWNERS,
    description="billing.credit_transactions, the append-only credit ledger: each hour's usage settled from "
    "fct_usage_charges (differences only: a deduction, an adjusting deduction or a reversal). Top-ups, "
    "SLA credits and adjustments are posted to the same table by their own assets and commands.",
    check_specs=[
        dg.AssetCheckSpec(
            "ledger_equals_usage_charges",
            asset=LEDGER,
            description="For every account, hour and usage kind of the run, the ledger's usage entries "
            "sum to fct_usage_charges.amount.",
        ),
        dg.AssetCheckSpec(
            "balance_cache_equals_ledger",
            asset=LEDGER,
            description="billing.credits.balance equals the balance on the account's newest ledger "
            "entry (billing verify checks every balance against the sum of the entries).",
        ),
    ],
)
def credit_transactions(context: dg.AssetExecutionContext, postgres: PostgresResource):
    window = context.partition_time_window
    with postgres.connect(autocommit=True) as conn:
        result = settle_priced_usage(conn, window.start, window.end)
        hour_texts = [hour.text for hour in Hour.range(Hour.of(window.start), Hour.of(window.end))]
        mismatches = conn.execute(
            _LEDGER_VS_CHARGES, {"start": window.start, "end": window.end, "hour_texts": hour_texts}
        ).fetchall()
        cache = conn.execute(_CACHE_VS_LEDGER).fetchall()
        heads = chain_heads(conn)
    context.log.info(result.summary())
    if result.unknown_accounts:
        context.log.warning(
            f"usage of [{window.start.isoformat()}, {window.end.isoformat()}) names accounts missing from "
            f"billing.accounts (not deducted): {', '.join(result.unknown_accounts)}; check the quarantine and the "
            "platform's accounts."
        )
    yield dg.MaterializeResult(
        metadata={
            "window": f"[{window.start.isoformat()}, {window.end.isoformat()})",
            "dagster/row_count": result.deductions + result.adjustments + result.reversals,  # entries posted
            "deductions": result.deductions,
            "adjustments": result.adjustments,
            "reversals": result.reversals,
            "already_posted": result.already_posted,
            "net_deducted": str(result.total_deducted),
            "accounts_charged": len(result.accounts),
            "unknown_accounts": dg.MetadataValue.json(result.unknown_accounts),
            # The chain heads, published outside the billing database (in Dagster's event log): a
            # checkpoint `billing verify` can be held against (docs/rules/ledger.md). One digest over
            # all heads, and the heads themselves up to a size the UI shows comfortably.
            "ledger_accounts": len(heads),
            "ledger_entries": sum(h["entries"] for h in heads.values()),
            "chain_heads_sha256": chain_heads_digest(heads),
            "chain_heads": dg.MetadataValue.json(dict(sorted(heads.items())[:CHAIN_HEADS_SHOWN])),
        }
    )
    yield dg.AssetCheckResult(
        check_name="ledger_equals_usage_charges",
        passed=not mismatches,
        description=None
        if not mismatches
        else f"{len(mismatches)} account-hour(s) differ, e.g. "
        + "; ".join(f"{a} {h:%Y-%m-%d %H:00} {k}: owed {o}, ledger {s}" for a, h, k, o, s in mismatches[:3]),
        metadata={
            "mismatches": dg.MetadataValue.json([[a, h.isoformat(), k, str(o), str(s)] for a, h, k, o, s in mismatches])
        },
    )
    yield dg.AssetCheckResult(
        check_name="balance_cache_equals_ledger",
        passed=not cache,
        description=None if not cache else "; ".join(f"{a}: cache {c}, ledger {t}" for a, c, t in cache[:3]),
        metadata={"mismatches": dg.MetadataValue.json([[a, str(c), str(t)] for a, c, t in cache])},
    )


@dg.asset(
    key=GRANT_EXPIRY,
    deps=[latest_hour_of(LEDGER)],
    group_name="ledger",
    kinds={"postgres"},
    owners=BILLING_OWNERS,
    description="grant_expiry entries in billing.credit_transactions: what is left of each credit grant past its "
    "expires_at leaves the balance by one entry, exactly once per grant, at the run's clock (docs/rules/ledger.md).",
    check_specs=[
        dg.AssetCheckSpec(
            "balance_equals_open_grants_minus_debt",
            asset=GRANT_EXPIRY,
            description="For every account, billing.credits.balance equals the remaining credits of its grants "
            "(billing.grant_balances) minus its outstanding debt (billing.grant_debts).",
        )
    ],
)
def grant_expiry(context: dg.AssetExecutionContext, postgres: PostgresResource):
    now = run_clock(context)
    with postgres.connect(autocommit=True) as conn:
        result = expire_due_grants(conn, now)
        mismatches = grant_identity_mismatches(conn)
    context.log.info(result.summary())
    yield dg.MaterializeResult(
        metadata={
            "now": now.isoformat(),
            "dagster/row_count": len(result.posted),  # grant_expiry entries posted
            "grants_expired": len(result.posted),
            "credits_expired": str(result.total),
            "already_posted": len(result.expired) - len(result.posted),
            "expired": dg.MetadataValue.json(
                [[e.account_id, e.grant_entry_id, str(e.amount), e.expires_at.isoformat()] for e in result.posted]
            ),
        }
    )
    yield dg.AssetCheckResult(
        check_name="balance_equals_open_grants_minus_debt",
        passed=not mismatches,
        severity=dg.AssetCheckSeverity.ERROR,
        description=None
        if not mismatches
        else f"{len(mismatches)} account(s) differ, e.g. "
        + "; ".join(f"{a}: balance {b}, open grants {g}, debt {d}" for a, b, g, d in mismatches[:3]),
        metadata={"mismatches": dg.MetadataValue.json([[a, str(b), str(g), str(d)] for a, b, g, d in mismatches])},
    )


credit_usage_job = dg.define_asset_job(
    "credit_usage_job",
    selection=dg.AssetSelection.assets(credit_transactions),
    tags=JOB_TAGS,
    description="Settles priced usage into the ledger for an hour (or a range), exactly once (docs/rules/ledger.md).",
)

defs = dg.Definitions(assets=[credit_transactions, grant_expiry, *grant_table_specs], jobs=[credit_usage_job])
