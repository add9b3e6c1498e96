-- Every draw on a grant with the month it counts in (docs/rules/credit-reports.md): the later of the
-- period of the entry that drew (billing.ledger_entry_period: a usage deduction's usage hour, a
-- grant_expiry's expiry month, else when posted) and the month the grant was granted. The same
-- rule as billing_pipeline/ledger/grant_queries.py (what explain and the invoice show);
-- tests/integration/test_grant_reads.py holds the two to the letter.

with draws as (
    select * from {{ ref('stg_ledger__grant_draws') }}
),

grants as (
    select * from {{ ref('stg_ledger__grants') }}
),

ledger as (
    select * from {{ ref('stg_ledger__credit_transactions') }}
)

select
    draws.draw_id,
    draws.grant_entry_id,
    grants.account_id,
    grants.kind,
    draws.drawing_entry_id,
    ledger.transaction_type as drawing_type,
    ledger.transaction_type = 'grant_expiry' as is_expiry,
    draws.amount,
    greatest(ledger.entry_period, grants.granted_month) as draw_month,
    -- The entry from which the ledger holds this draw: a debt is paid when the later grant is
    -- posted, a reversal gives back when it is posted.
    greatest(draws.drawing_entry_id, draws.grant_entry_id) as recorded_with_entry_id
from draws
inner join grants on draws.grant_entry_id = grants.grant_entry_id
inner join ledger on draws.drawing_entry_id = ledger.transaction_id
