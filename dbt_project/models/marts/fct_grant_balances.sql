-- One row per credit grant (docs/rules/credit-reports.md): what it granted, what debits drew from it, what
-- expired unused and what remains, as the ledger stood at the build (the hourly cycle builds it
-- after settling its hours: as of the last settled hour). account_last_entry_id is the newest
-- ledger entry of the account the figures include (the identity test compares the ledger up to it).

with grants as (
    select * from {{ ref('stg_ledger__grants') }}
),

draws as (
    -- Per grant, month and used or expired: daily sums, the latest draws one by one.
    select * from {{ ref('int_grant_draws_current') }}
),

accounts as (
    select * from {{ ref('stg_platform__accounts') }}
),

per_grant as (
    select
        grant_entry_id,
        coalesce(sum(amount) filter (where not is_expiry), 0) as drawn,
        coalesce(sum(amount) filter (where is_expiry), 0) as expired
    from draws
    group by grant_entry_id
),

account_heads as (
    -- The newest entry per account, through the ledger's (account_id, account_seq) key.
    select
        accounts.account_id,
        head.transaction_id as account_last_entry_id
    from accounts
    cross join lateral (
        select ledger.transaction_id
        from {{ ref('stg_ledger__credit_transactions') }} as ledger
        where ledger.account_id = accounts.account_id
        order by ledger.account_seq desc
        limit 1
    ) as head
)

select
    grants.grant_entry_id,
    grants.account_id,
    grants.kind,
    grants.source_type,
    grants.priority,
    grants.granted_at,
    grants.expires_at,
    grants.granted,
    coalesce(per_grant.drawn, 0) as drawn,
    coalesce(per_grant.expired, 0) as expired,
    grants.granted - coalesce(per_grant.drawn, 0) - coalesce(per_grant.expired, 0) as remaining,
    grants.granted - coalesce(per_grant.drawn, 0) - coalesce(per_grant.expired, 0) > 0 as is_open,
    grants.paid_amount,
    grants.paid_currency,
    account_heads.account_last_entry_id,
    {{ as_of_timestamp() }} as as_of
from grants
left join per_grant on grants.grant_entry_id = per_grant.grant_entry_id
left join account_heads on grants.account_id = account_heads.account_id
