-- Monthly availability per deployment (docs/rules/month-end.md), one row per deployment and closed
-- month, as sla_credit_job measured it, with the ledger entry that paid its credit (if any).
-- The measurement itself is computed once, by billing_pipeline/invoicing/sla.py, and is immutable.
with measurements as (
    select * from {{ ref('stg_invoicing__sla_measurements') }}
),

credits as (
    select
        transaction_id,
        idempotency_key,
        amount
    from {{ ref('stg_ledger__credit_transactions') }}
    where transaction_type = 'sla_credit'
)

select
    m.deployment_id,
    m.sla_month,
    m.account_id,
    m.existed_minutes,
    m.excluded_minutes,
    m.eligible_minutes,
    m.measured_minutes,
    m.down_minutes,
    m.unmeasured_minutes,
    m.availability,
    m.sla_tier_id,
    m.credit_share,
    m.base_amount,
    coalesce(c.amount, 0)::numeric as credited_amount,
    c.transaction_id as sla_credit_transaction_id,
    m.sla_outcome,
    m.measured_at
from measurements as m
left join credits as c on m.idempotency_key = c.idempotency_key
