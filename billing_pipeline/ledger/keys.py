"""Every idempotency key the ledger is posted with, and every reading of an entry's hour and period.

An idempotency key is what makes an action exactly once: posting the same key again writes
nothing. So a key format is part of the ledger's contract, owned here and nowhere else: writers
(the settlement, SLA credits, auto top-ups, the command line) ask this module for their key and
mint nothing themselves. The keys are also inside every entry's hash, so a format already posted
can never change: a new format applies to new entries only, and the action that wrote under an
earlier format must still find its old entry (``earlier_keys``), or it would post twice.

========================  ==============================================  ======================
entry                     key                                             since
========================  ==============================================  ======================
usage deduction/reversal  ``usage:<account>:<hour>:<kind>[:<n>]``         always
SLA credit                ``sla:<deployment>:<YYYY-MM>``                  always
auto top-up               ``auto_topup:<account>:<attempt no>``           always
manual top-up             ``topup:<payment reference>``                   issue 21 (before: the
                                                                          bare reference)
admin adjustment          ``adjust:<32 hex of account, amount, reason,    always (a given
                          actor>`` or ``adjust:key:<given key>``          ``--key``: before, bare)
reversal by hand          ``reversal:<entry id>[:<n>]``                   issue 21
promotional grant         ``promotional_grant:<reference>``               issue 22
grant expiry              ``grant_expiry:<grant's entry id>``             issue 22
========================  ==============================================  ======================

``<hour>`` is ``core.hours.Hour.text``; the settlement builds the same text set-based in SQL.

An entry's usage hour and its period are read here too, in Python (``usage_hour``,
``entry_period``) and in SQL (``billing.ledger_entry_usage_hour`` from migration 0010 and
``billing.ledger_entry_period`` from 0007, whose SQL spellings ``USAGE_HOUR_SQL`` and
``PERIOD_SQL`` every query uses): the usage hour is the hour a usage deduction or its reversal
settles (``reference.hour`` of an entry whose reference names a ``usage_kind``); the period is
the month of that hour, the measured month of an SLA credit, the month of a grant expiry's
``reference.expires_at`` (migration 0014), else the month the entry was posted (``created_at``, UTC). tests/integration/test_ledger_readings.py holds the two to the letter.
The settlement (``deduction.py``) and its hourly check still compare ``reference ->> 'hour'`` with
``Hour.text`` as text: that is the writer finding the entries it wrote, in the spelling it wrote
them, through the index on that expression, not a reading of the hour.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from billing_pipeline.core.errors import InputError
from billing_pipeline.core.times import parse_time

USAGE_TYPES = ("usage_deduction", "reversal")
MANUAL_TOPUP_PREFIX = "topup:"
ADJUSTMENT_PREFIX = "adjust:"
PROMOTIONAL_GRANT_PREFIX = "promotional_grant:"

# ---- keys ------------------------------------------------------------------------------------


def usage_key(account_id: str, hour_text: str, usage_kind: str, entries_before: int = 0) -> str:
    """The key of the entry settling ``account_id``'s ``usage_kind`` in the hour ``hour_text``
    (``Hour.text``); ``entries_before`` entries already settle it (a correction is the n-th)."""
    return f"usage:{account_id}:{hour_text}:{usage_kind}" + (f":{entries_before + 1}" if entries_before else "")


def sla_key(deployment_id: str, month: date) -> str:
    """The key of the SLA credit of ``deployment_id`` for ``month``."""
    return f"sla:{deployment_id}:{month:%Y-%m}"


def sla_key_sql(deployment_sql: str, month_text_sql: str) -> str:
    """``sla_key`` as a SQL expression, for set-based writers (the measurement stores it)."""
    return f"'sla:' || {deployment_sql} || ':' || {month_text_sql}"


def auto_topup_key(account_id: str, attempt_no: int) -> str:
    """The key of an auto top-up attempt (also its Stripe idempotency key and ledger key)."""
    return f"auto_topup:{account_id}:{attempt_no}"


def auto_topup_key_sql(account_sql: str, attempt_no_sql: str) -> str:
    """``auto_topup_key`` as a SQL expression (the attempt row is numbered in SQL)."""
    return f"'auto_topup:' || {account_sql} || ':' || {attempt_no_sql}"


def manual_topup_key(payment_reference: str) -> str:
    """The key of a top-up a person posts for a payment received: the payment's reference,
    namespaced so that it can never be taken for another writer's key."""
    return MANUAL_TOPUP_PREFIX + payment_reference


def promotional_grant_key(reference: str) -> str:
    """The key of a promotional grant a person posts (``billing grant --reference``): the
    reference, namespaced like a top-up's, so the same reference grants once."""
    return PROMOTIONAL_GRANT_PREFIX + reference


def adjustment_key(account_id: str, amount: Decimal, reason: str | None, actor: str | None, given: str | None) -> str:
    """The key of an admin adjustment: derived from what it is (so repeating the same command
    posts once), or from a key the person gave (to post an identical adjustment again)."""
    if given:
        return f"{ADJUSTMENT_PREFIX}key:{given}"
    digest = hashlib.sha256("\x1f".join([account_id, f"{amount}", reason or "", actor or ""]).encode()).hexdigest()
    return ADJUSTMENT_PREFIX + digest[:32]


def reversal_key(entry_id: int, entries_before: int = 0) -> str:
    """The key of a reversal a person posts of entry ``entry_id``."""
    return f"reversal:{entry_id}" + (f":{entries_before + 1}" if entries_before else "")


def grant_expiry_key(grant_entry_id: int) -> str:
    """The key of the one ``grant_expiry`` entry of the grant opened by entry ``grant_entry_id``:
    derived from the grant alone, so a grant expires once whoever posts it and however often."""
    return f"grant_expiry:{int(grant_entry_id)}"


def earlier_keys(key: str) -> list[str]:
    """Keys the same action was posted under by an earlier format (newest first), to be found
    before posting under ``key``: a manual top-up's bare reference, an adjustment's bare given key.
    An entry found under one of them is the action already done."""
    if key.startswith(MANUAL_TOPUP_PREFIX):
        return [key[len(MANUAL_TOPUP_PREFIX) :]]
    if key.startswith(ADJUSTMENT_PREFIX + "key:"):
        return [key[len(ADJUSTMENT_PREFIX + "key:") :]]
    return []


# ---- an entry's usage hour and period ---------------------------------------------------------

# The SQL readers, with the columns of billing.credit_transactions (``{t}`` is the table alias).
USAGE_HOUR_SQL = "billing.ledger_entry_usage_hour({t}type, {t}reference)"
PERIOD_SQL = "billing.ledger_entry_period({t}type, {t}reference, {t}created_at)"
_HOUR_LIKE = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}", re.ASCII)


def usage_hour_sql(alias: str = "") -> str:
    """SQL: the usage hour of the entry (timestamptz, null for entries that settle no hour)."""
    return USAGE_HOUR_SQL.format(t=f"{alias}." if alias else "")


def period_sql(alias: str = "") -> str:
    """SQL: the entry's period (a date, the first of its month)."""
    return PERIOD_SQL.format(t=f"{alias}." if alias else "")


def usage_hour(entry_type: str, reference: Mapping[str, Any] | None) -> datetime | None:
    """The hour a usage entry settles (aware, UTC), or None for any other entry."""
    if entry_type not in USAGE_TYPES or not reference or "usage_kind" not in reference:
        return None
    text = reference.get("hour")
    if not isinstance(text, str) or not _HOUR_LIKE.match(text):
        return None
    try:
        return parse_time(text, what="usage hour")
    except InputError:
        return None


def entry_period(entry_type: str, reference: Mapping[str, Any] | None, created_at: datetime) -> date:
    """The month an entry belongs to (first day): its usage hour's, its SLA month, else when posted."""
    hour = usage_hour(entry_type, reference)
    if hour is not None:
        return hour.date().replace(day=1)
    month = (reference or {}).get("month") if entry_type == "sla_credit" else None
    if isinstance(month, str) and re.fullmatch(r"\d{4}-\d{2}", month, re.ASCII):
        return date(int(month[:4]), int(month[5:]), 1)
    expires = (reference or {}).get("expires_at") if entry_type == "grant_expiry" else None
    if isinstance(expires, str) and _HOUR_LIKE.match(expires):
        try:
            return parse_time(expires, what="grant expiry").astimezone(UTC).date().replace(day=1)
        except InputError:
            pass
    return created_at.astimezone(UTC).date().replace(day=1)
