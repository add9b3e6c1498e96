-- docs/rules/credit-reports.md: recognised + breakage + deferred = paid granted, to the micro-credit, cumulative to
-- each month's end. Rows returned are account-months that break it.
select
    account_id,
    month,
    recognised_to_date,
    breakage_to_date,
    deferred,
    paid_granted_to_date
from {{ ref('fct_credit_revenue') }}
where recognised_to_date + breakage_to_date + deferred <> paid_granted_to_date
