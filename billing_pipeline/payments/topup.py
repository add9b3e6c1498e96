"""Stripe auto top-up: charge the saved card off session when the balance is low, credit it once.

For every account with ``auto_topup_enabled``, a saved Stripe customer and payment method, and a
balance at or below ``auto_topup_threshold`` (else ``low_balance_threshold``):

0. The amount: ``auto_topup_mode = 'fixed'`` (the default) charges ``auto_topup_amount``;
   ``'target'`` charges what takes the balance to ``auto_topup_target_balance`` (target − balance,
   rounded up to the cent: on the target exactly, or less than a cent above it when the balance
   holds fractions of a cent). In target mode a charge that would exceed ``auto_topup_monthly_limit``
   is capped to what the limit leaves, and the account is told (``auto_topup_capped``); in fixed
   mode it is skipped, as before. The amount is fixed when the attempt is recorded (step 3).

1. The account is locked for this run with a session advisory lock (a second run skips it; a
   killed run's lock dies with its connection).
2. Eligibility is re-read under the lock: no unresolved attempt, not paused, backoff elapsed,
   and ``auto_topup_monthly_limit`` not exceeded by this charge (pending and succeeded attempts
   of the month count).
3. A ``topup_attempts`` row with a unique ``attempt_key`` is **committed** before Stripe is
   called; the same key is Stripe's idempotency key and the PaymentIntent's metadata.
4. Stripe's answer is recorded: success posts one ``auto_topup`` ledger entry whose idempotency
   key is the attempt key, in the same transaction that marks the attempt succeeded; a decline or
   ``authentication_required`` marks it failed, tells the account, and backs off (1 h, 2 h …);
   three failures in a row pause auto top-up until the saved payment method changes.

A run that died between Stripe's answer and the ledger leaves a ``pending`` attempt. The next run
finds the PaymentIntent by its metadata (listing the customer's PaymentIntents, which is strongly
consistent) and finishes the attempt. If Stripe does not know it, the attempt is charged again,
under the same idempotency key, only once its last request can no longer be in flight: when
``charge_requested_at`` (committed before each request; the first is ``created_at``) is at least
``IN_FLIGHT_WINDOW`` (the Stripe client's ``REQUEST_TIMEOUT`` plus ``IN_FLIGHT_MARGIN``) before the
run's clock. Younger, it stays pending and the run reports it.

What prevents a second charge, exactly:

* a request that Stripe has answered, or that reached it within the window: the lookup finds its
  PaymentIntent, so nothing is sent again (this guard, proved against localstripe, which ignores
  idempotency keys);
* a request held longer than the window somewhere between this process and Stripe (a proxy,
  a load balancer) and delivered after the attempt was charged again: only Stripe's
  ``Idempotency-Key`` (the attempt key) deduplicates it, and Stripe keeps a key for 24 hours.
  The window makes this need a request delayed for minutes, not a kill during one.

Whatever slips through is reported: each run lists the PaymentIntents of the customers with an
attempt in the last ``DUPLICATE_LOOKBACK`` and names any attempt key that more than one
PaymentIntent carries (``TopupResult.duplicates``; the asset check
``one_payment_intent_per_attempt`` fails on it). Refunding the extra charge is left to a person.

Currency: one credit is one unit of the Stripe currency (``StripeResource.currency``), charged in
cents; amounts are rounded half-even to the cent and exactly what was charged is credited. The
entry's ``reference.paid`` (``{"amount", "currency"}``) keeps what the customer paid: its credits
open a paid grant (docs/rules/ledger.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal

import psycopg

from billing_pipeline.core.clock import system_now
from billing_pipeline.core.errors import ConfigurationError
from billing_pipeline.db.connection import connect
from billing_pipeline.ledger import Entry, post_entry, round_credits
from billing_pipeline.ledger.keys import auto_topup_key_sql
from billing_pipeline.notifications.outbox import enqueue_notification
from billing_pipeline.resources.stripe import (
    ACCOUNT_METADATA,
    ATTEMPT_KEY_METADATA,
    REQUEST_TIMEOUT,
    PaymentOutcome,
    StripeResource,
)

MAX_CONSECUTIVE_FAILURES = 3
BACKOFF_BASE = timedelta(hours=1)
CENT = Decimal("0.01")
# Beyond the client's own timeout: time for a request that reached Stripe (or a proxy in front of
# it) as the client gave up or died to be acted on, and for clocks of two machines running the
# pass to disagree. A pending attempt younger than the window is never charged again.
IN_FLIGHT_MARGIN = timedelta(minutes=5)
IN_FLIGHT_WINDOW = REQUEST_TIMEOUT + IN_FLIGHT_MARGIN
# A second PaymentIntent for an attempt can only appear while one of its requests is in flight;
# customers with an attempt charged within this lookback are checked every run.
DUPLICATE_LOOKBACK = timedelta(days=7)

_STATE = """
WITH acct AS (
    SELECT a.id, a.auto_topup_enabled AS enabled,
           CASE WHEN a.auto_topup_mode = 'target' THEN a.auto_topup_target_balance - coalesce(c.balance, 0)
                ELSE a.auto_topup_amount END AS amount,
           coalesce(a.auto_topup_threshold, a.low_balance_threshold) AS threshold,
           a.auto_topup_monthly_limit AS monthly_limit, a.stripe_customer_id AS customer,
           a.stripe_payment_method_id AS payment_method, coalesce(c.balance, 0) AS balance,
           a.auto_topup_mode AS mode, a.auto_topup_target_balance AS target
    FROM billing.accounts a
    LEFT JOIN billing.credits c ON c.account_id = a.id
    WHERE (%(account)s::text IS NULL OR a.id = %(account)s)
      AND a.auto_topup_enabled
      AND CASE WHEN a.auto_topup_mode = 'target' THEN a.auto_topup_target_balance > coalesce(c.balance, 0)
               ELSE a.auto_topup_amount > 0 END
      AND a.stripe_customer_id IS NOT NULL AND a.stripe_payment_method_id IS NOT NULL
      AND coalesce(c.balance, 0) <= coalesce(a.auto_topup_threshold, a.low_balance_threshold)
), marks AS (
    SELECT acct.id,
           (SELECT max(t.id) FROM billing.topup_attempts t
            WHERE t.account_id = acct.id AND t.status = 'succeeded') AS last_success,
           (SELECT max(p.last_attempt_id) FROM billing.topup_pauses p WHERE p.account_id = acct.id) AS last_pause
    FROM acct
)
SELECT acct.id, acct.amount, acct.mode, acct.target, acct.threshold, acct.monthly_limit, acct.customer, acct.payment_method, acct.balance,
       (SELECT coalesce(sum(t.amount), 0) FROM billing.topup_attempts t
        WHERE t.account_id = acct.id AND t.month = %(month)s AND t.status IN ('pending', 'succeeded')) AS used,
       EXISTS (SELECT 1 FROM billing.topup_attempts t WHERE t.account_id = acct.id AND t.status = 'pending') AS pending,
       EXISTS (SELECT 1 FROM billing.topup_pauses p WHERE p.account_id = acct.id AND p.lifted_at IS NULL) AS paused,
       f.failures, f.last_failure_at
FROM acct
JOIN marks m ON m.id = acct.id
CROSS JOIN LATERAL (
    SELECT count(*) AS failures, max(t.resolved_at) AS last_failure_at
    FROM billing.topup_attempts t
    WHERE t.account_id = acct.id AND t.status = 'failed'
      AND t.stripe_payment_method_id = acct.payment_method
      AND t.id > greatest(coalesce(m.last_success, 0), coalesce(m.last_pause, 0))
) f
ORDER BY acct.id
"""

# A changed saved card lifts a pause (that is the customer's way to resume).
_LIFT_PAUSES = """
UPDATE billing.topup_pauses p SET lifted_at = %(now)s
FROM billing.accounts a
WHERE a.id = p.account_id AND p.lifted_at IS NULL
  AND a.stripe_payment_method_id IS DISTINCT FROM p.stripe_payment_method_id
RETURNING p.account_id
"""


@dataclass
class TopupResult:
    charged: list[tuple[str, Decimal, str]] = field(default_factory=list)
    recovered: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    paused: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    unresolved: list[tuple[str, str]] = field(default_factory=list)
    # (account, amount charged, amount the target wanted): target-mode charges cut to the monthly limit.
    capped: list[tuple[str, Decimal, Decimal]] = field(default_factory=list)
    # (account, attempt key, PaymentIntent ids): an attempt Stripe charged more than once.
    duplicates: list[tuple[str, str, list[str]]] = field(default_factory=list)
    # Customers whose PaymentIntents could not be listed, so the duplicate check did not cover them.
    unchecked: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"auto top-up: {len(self.charged)} charged ({sum((c[1] for c in self.charged), Decimal(0))} credits), "
            f"{len(self.recovered)} recovered after an interruption, {len(self.failed)} failed, "
            f"{len(self.paused)} paused, {len(self.resumed)} resumed after a card change, "
            f"{len(self.skipped)} skipped, {len(self.capped)} capped by the monthly limit, "
            f"{len(self.unresolved)} left pending, "
            f"{len(self.duplicates)} attempt(s) charged more than once"
        )


@dataclass(frozen=True)
class _Attempt:
    id: int
    account_id: str
    attempt_key: str
    amount: Decimal
    customer: str
    payment_method: str
    charge_requested_at: datetime


def _month(now: datetime) -> date:
    return now.astimezone(UTC).date().replace(day=1)


def _lock_key(account_id: str) -> str:
    return f"billing.auto_topup:{account_id}"


def run_auto_topup(
    database_url: str,
    stripe: StripeResource,
    now: datetime | None = None,
    *,
    account_id: str | None = None,
) -> TopupResult:
    """One auto top-up pass over every account (or one), safe to run at any time and concurrently."""
    now = (now or system_now()).astimezone(UTC)
    result = TopupResult()
    with connect(database_url, autocommit=True) as lock_conn, connect(database_url, autocommit=True) as conn:
        with conn.transaction():
            result.resumed = [r[0] for r in conn.execute(_LIFT_PAUSES, {"now": now})]
        pending = conn.execute(
            "SELECT account_id FROM billing.topup_attempts WHERE status = 'pending' "
            "AND (%s::text IS NULL OR account_id = %s) ORDER BY account_id",
            (account_id, account_id),
        ).fetchall()
        candidates = _state(conn, now, account_id)
        conn.commit()
        accounts = sorted({r[0] for r in pending} | {r[0] for r in candidates})
        if accounts:
            try:
                stripe.check_configured()  # fail before recording any attempt
            except ConfigurationError as exc:
                raise ConfigurationError(f"{exc} Accounts waiting for an auto top-up: {', '.join(accounts)}.") from None
        for account in accounts:
            if not lock_conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (_lock_key(account),)).fetchone()[0]:
                result.skipped.append((account, "another auto top-up run holds this account"))
                continue
            try:
                _process_account(conn, stripe, account, now, result)
            except (ConfigurationError, psycopg.Error):
                raise
            except Exception as exc:  # Stripe unreachable while looking an attempt up: next run retries
                result.unresolved.append((account, f"{type(exc).__name__}: {exc}"[:500]))
            finally:
                lock_conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (_lock_key(account),))
        _check_duplicates(conn, stripe, now, account_id, result)
    return result


def _check_duplicates(
    conn: psycopg.Connection, stripe: StripeResource, now: datetime, account_id: str | None, result: TopupResult
) -> None:
    """Every attempt key that more than one PaymentIntent carries, for the customers charged lately."""
    customers = conn.execute(
        "SELECT DISTINCT account_id, stripe_customer_id FROM billing.topup_attempts "
        "WHERE (%(account)s::text IS NULL OR account_id = %(account)s) "
        "AND (status = 'pending' OR coalesce(charge_requested_at, created_at) >= %(since)s) "
        "ORDER BY account_id, stripe_customer_id",
        {"account": account_id, "since": now - DUPLICATE_LOOKBACK},
    ).fetchall()
    conn.commit()
    if customers:
        stripe.check_configured()
    for account, customer in customers:
        try:
            found = stripe.payment_intents_by_attempt(customer_id=customer)
        except Exception as exc:  # not checked is reported, never taken for "no duplicate"
            result.unchecked.append((account, f"{customer}: {type(exc).__name__}: {exc}"[:500]))
            continue
        for key, outcomes in sorted(found.items()):
            if len(outcomes) > 1:
                result.duplicates.append((account, key, sorted(o.payment_intent_id or "" for o in outcomes)))


def _state(conn: psycopg.Connection, now: datetime, account_id: str | None) -> list[tuple]:
    return conn.execute(_STATE, {"account": account_id, "month": _month(now)}).fetchall()


def _process_account(
    conn: psycopg.Connection, stripe: StripeResource, account: str, now: datetime, result: TopupResult
) -> None:
    # 1. An attempt a previous run left unresolved is finished first, never charged anew.
    row = conn.execute(
        "SELECT id, account_id, attempt_key, amount, stripe_customer_id, stripe_payment_method_id, "
        "coalesce(charge_requested_at, created_at) "
        "FROM billing.topup_attempts WHERE account_id = %s AND status = 'pending'",
        (account,),
    ).fetchone()
    conn.commit()
    if row:
        attempt = _Attempt(*row)
        outcome = stripe.find_payment_intent(customer_id=attempt.customer, attempt_key=attempt.attempt_key)
        if outcome is None:
            # Stripe does not know it *yet*: the last request may still be on its way (the run that
            # sent it was killed while waiting). Charging now could make a second PaymentIntent.
            in_flight_until = attempt.charge_requested_at + IN_FLIGHT_WINDOW
            if now < in_flight_until:
                result.unresolved.append(
                    (
                        account,
                        f"{attempt.attempt_key}: its charge request of {attempt.charge_requested_at.isoformat()} "
                        f"may still be in flight and Stripe does not know it yet; not charged again before "
                        f"{in_flight_until.isoformat()}",
                    )
                )
                return
            # Past the window the request never reached Stripe: charge under the same key,
            # recording the new request first so a kill during it is covered the same way.
            with conn.transaction():
                conn.execute(
                    "UPDATE billing.topup_attempts SET charge_requested_at = %s WHERE id = %s AND status = 'pending'",
                    (now, attempt.id),
                )
            outcome = _charge(stripe, attempt)
        if _finish(conn, attempt, outcome, now, result, stripe.currency):
            result.recovered.append((account, attempt.attempt_key))
        return

    # 2. Eligibility, re-read under the lock.
    state = _state(conn, now, account)
    conn.commit()
    if not state:
        return
    (
        _,
        amount,
        mode,
        target,
        _threshold,
        monthly_limit,
        customer,
        payment_method,
        balance,
        used,
        _pending,
        paused,
        failures,
        last_failure_at,
    ) = state[0]
    # Target mode rounds up: the balance lands on the target, never a fraction of a cent below it.
    amount = amount.quantize(CENT, rounding=ROUND_CEILING if mode == "target" else ROUND_HALF_EVEN)
    wanted = amount
    if mode == "target" and monthly_limit is not None and used + amount > monthly_limit:
        amount = max((monthly_limit - used).quantize(CENT, rounding=ROUND_FLOOR), Decimal("0.00"))
    if paused:
        result.skipped.append((account, "paused after repeated failures until the card changes"))
        return
    if failures and last_failure_at is not None:
        retry_at = last_failure_at + BACKOFF_BASE * (2 ** (failures - 1))
        if now < retry_at:
            result.skipped.append((account, f"backing off until {retry_at.isoformat()}"))
            return
    if monthly_limit is not None and (used + amount > monthly_limit or amount <= 0):
        with conn.transaction():
            enqueue_notification(
                conn,
                account_id=account,
                kind="auto_topup_monthly_limit",
                dedupe_key=f"auto_topup_monthly_limit:{account}:{_month(now):%Y-%m}",
                subject=f"Satusky: auto top-up limit reached on account {account}",
                body=(
                    f"Auto top-up of {wanted} credits was not charged: {used} of the monthly limit of "
                    f"{monthly_limit} credits is already used in {_month(now):%B %Y}. The balance is {balance} "
                    "credits; add credits by hand or raise the limit."
                ),
                payload={
                    "event": "auto_topup_monthly_limit",
                    "account_id": account,
                    "amount": str(wanted),
                    "used": str(used),
                    "monthly_limit": str(monthly_limit),
                    "balance": str(balance),
                },
            )
        result.skipped.append((account, f"monthly limit {monthly_limit} would be exceeded ({used} used)"))
        return

    # 3. The attempt is committed before Stripe is called (with the notice of a capped amount).
    with conn.transaction():
        attempt = _Attempt(
            *conn.execute(
                """
            INSERT INTO billing.topup_attempts (account_id, attempt_key, attempt_no, amount, month,
                stripe_customer_id, stripe_payment_method_id, created_at, charge_requested_at)
            SELECT %(account)s, """
                + auto_topup_key_sql("%(account)s", "n")
                + """, n, %(amount)s, %(month)s,
                   %(customer)s, %(pm)s, %(now)s, %(now)s
            FROM (SELECT coalesce(max(attempt_no), 0) + 1 AS n FROM billing.topup_attempts
                  WHERE account_id = %(account)s) x
            RETURNING id, account_id, attempt_key, amount, stripe_customer_id, stripe_payment_method_id,
                      charge_requested_at
            """,
                {
                    "account": account,
                    "amount": amount,
                    "month": _month(now),
                    "customer": customer,
                    "pm": payment_method,
                    "now": now,
                },
            ).fetchone()
        )
        if amount < wanted:
            _notify_capped(conn, attempt, wanted, target, balance, used, monthly_limit, now)
            result.capped.append((account, amount, wanted))
    outcome = _charge(stripe, attempt)
    _finish(conn, attempt, outcome, now, result, stripe.currency)


def _notify_capped(conn, attempt: _Attempt, wanted, target, balance, used, monthly_limit, now: datetime) -> None:
    """Tell the account its target-mode top-up was cut to what the monthly limit leaves."""
    charged = attempt.amount.quantize(CENT)
    enqueue_notification(
        conn,
        account_id=attempt.account_id,
        kind="auto_topup_capped",
        dedupe_key=f"{attempt.attempt_key}:capped",
        subject=f"Satusky: auto top-up on account {attempt.account_id} capped by the monthly limit",
        body=(
            f"Reaching the target balance of {target} credits needs {wanted} credits (the balance is {balance}), "
            f"but the monthly auto top-up limit of {monthly_limit} credits leaves {charged} in "
            f"{_month(now):%B %Y} ({used} already used), so {charged} credits are charged. Add credits by "
            "hand or raise the limit to reach the target."
        ),
        payload={
            "event": "auto_topup_capped",
            "account_id": attempt.account_id,
            "attempt_key": attempt.attempt_key,
            "amount": str(charged),
            "wanted": str(wanted),
            "target_balance": str(target),
            "balance": str(balance),
            "used": str(used),
            "monthly_limit": str(monthly_limit),
        },
    )


def _charge(stripe: StripeResource, attempt: _Attempt) -> PaymentOutcome:
    try:
        outcome = stripe.charge_off_session(
            customer_id=attempt.customer,
            payment_method_id=attempt.payment_method,
            amount_cents=int(attempt.amount / CENT),
            idempotency_key=attempt.attempt_key,
            metadata={ATTEMPT_KEY_METADATA: attempt.attempt_key, ACCOUNT_METADATA: attempt.account_id},
        )
    except Exception as exc:  # network trouble etc.: the attempt stays pending and is resolved next run
        return PaymentOutcome(None, "unknown", type(exc).__name__, str(exc)[:500])
    return outcome


def _finish(
    conn: psycopg.Connection,
    attempt: _Attempt,
    outcome: PaymentOutcome,
    now: datetime,
    result: TopupResult,
    currency: str,
) -> bool:
    """Record Stripe's answer; True when the attempt is resolved (succeeded or failed)."""
    account = attempt.account_id
    if outcome.status in ("processing", "unknown"):
        result.unresolved.append(
            (account, f"{attempt.attempt_key}: {outcome.status} {outcome.failure_message or ''}".strip())
        )
        return False
    with conn.transaction():
        still_pending = conn.execute(
            "SELECT 1 FROM billing.topup_attempts WHERE id = %s AND status = 'pending' FOR UPDATE", (attempt.id,)
        ).fetchone()
        if not still_pending:
            return False
        if outcome.status == "succeeded":
            credited = (Decimal(outcome.amount_cents) * CENT) if outcome.amount_cents is not None else attempt.amount
            posted = post_entry(
                conn,
                Entry(
                    account,
                    "auto_topup",
                    credited,
                    attempt.attempt_key,
                    reference={
                        "payment_intent": outcome.payment_intent_id,
                        "attempt_key": attempt.attempt_key,
                        "stripe_customer": attempt.customer,
                        # What the customer paid: the entry opens a paid grant (docs/rules/ledger.md).
                        "paid": {"amount": f"{round_credits(credited)}", "currency": currency},
                    },
                ),
            )
            conn.execute(
                "UPDATE billing.topup_attempts SET status = 'succeeded', payment_intent_id = %s, ledger_entry_id = %s, "
                "resolved_at = %s WHERE id = %s",
                (outcome.payment_intent_id, posted.entry_id, now, attempt.id),
            )
            enqueue_notification(
                conn,
                account_id=account,
                kind="auto_topup_succeeded",
                dedupe_key=f"{attempt.attempt_key}:succeeded",
                subject=f"Satusky: {credited} credits added to account {account}",
                body=(
                    f"Your saved card was charged for an auto top-up of {credited} credits "
                    f"(payment {outcome.payment_intent_id}). The balance is now {posted.balance_after} credits."
                ),
                payload={
                    "event": "auto_topup_succeeded",
                    "account_id": account,
                    "amount": str(credited),
                    "payment_intent": outcome.payment_intent_id,
                    "balance": str(posted.balance_after),
                },
            )
            result.charged.append((account, credited, outcome.payment_intent_id or ""))
            return True
        conn.execute(
            "UPDATE billing.topup_attempts SET status = 'failed', payment_intent_id = %s, failure_code = %s, "
            "failure_message = %s, resolved_at = %s WHERE id = %s",
            (outcome.payment_intent_id, outcome.failure_code, outcome.failure_message, now, attempt.id),
        )
        failures = conn.execute(
            """
            SELECT count(*) FROM billing.topup_attempts t
            WHERE t.account_id = %(account)s AND t.status = 'failed' AND t.stripe_payment_method_id = %(pm)s
              AND t.id > greatest(
                  coalesce((SELECT max(id) FROM billing.topup_attempts WHERE account_id = %(account)s
                            AND status = 'succeeded'), 0),
                  coalesce((SELECT max(last_attempt_id) FROM billing.topup_pauses WHERE account_id = %(account)s), 0))
            """,
            {"account": account, "pm": attempt.payment_method},
        ).fetchone()[0]
        pause = failures >= MAX_CONSECUTIVE_FAILURES
        retry_at = now + BACKOFF_BASE * (2 ** (failures - 1))
        what_next = (
            "Auto top-up is now paused until the saved card changes."
            if pause
            else f"We will try again after {retry_at:%Y-%m-%d %H:%M} UTC; after "
            f"{MAX_CONSECUTIVE_FAILURES} failures in a row auto top-up pauses until the card changes."
        )
        enqueue_notification(
            conn,
            account_id=account,
            kind="auto_topup_failed",
            dedupe_key=f"{attempt.attempt_key}:failed",
            subject=f"Satusky: auto top-up failed on account {account}",
            body=(
                f"Charging {attempt.amount} credits to the saved card failed: {outcome.failure_message} "
                f"({outcome.failure_code}). {what_next}"
            ),
            payload={
                "event": "auto_topup_failed",
                "account_id": account,
                "amount": str(attempt.amount),
                "failure_code": outcome.failure_code,
                "consecutive_failures": failures,
                "payment_intent": outcome.payment_intent_id,
                "paused": pause,
            },
        )
        if pause:
            conn.execute(
                "INSERT INTO billing.topup_pauses (account_id, stripe_payment_method_id, paused_at, last_attempt_id) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (account, attempt.payment_method, now, attempt.id),
            )
            enqueue_notification(
                conn,
                account_id=account,
                kind="auto_topup_paused",
                dedupe_key=f"auto_topup_paused:{attempt.attempt_key}",
                subject=f"Satusky: auto top-up paused on account {account}",
                body=(
                    f"Auto top-up failed {failures} times in a row on the saved card, so it is paused. "
                    "Save a different card to resume it, or add credits by hand."
                ),
                payload={"event": "auto_topup_paused", "account_id": account, "consecutive_failures": failures},
            )
            result.paused.append(account)
        result.failed.append((account, outcome.failure_code or "failed"))
        return True
