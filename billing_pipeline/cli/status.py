"""`billing status ACCOUNT`: the balance and the account's state, in plain words."""

from __future__ import annotations

from decimal import Decimal

from billing_pipeline.cli.output import credits, emit
from billing_pipeline.db import connect
from billing_pipeline.errors import InputError


def register(subparsers, json_parent) -> None:
    p = subparsers.add_parser("status", parents=[json_parent], help="balance and lifecycle state of an account")
    p.add_argument("account")
    p.set_defaults(handler=_status)


def balance_state(balance: Decimal, threshold: Decimal) -> str:
    """The lifecycle state the balance alone implies (contract section 6)."""
    if balance <= 0:
        return "grace_period"
    if balance <= threshold:
        return "low_balance"
    return "healthy"


def _status(args) -> int:
    with connect() as conn:
        row = conn.execute(
            "SELECT a.id, a.name, a.low_balance_threshold, coalesce(c.balance, 0), c.updated_at "
            "FROM billing.accounts a LEFT JOIN billing.credits c ON c.account_id = a.id WHERE a.id = %s",
            (args.account,),
        ).fetchone()
    if row is None:
        raise InputError(f"unknown account {args.account!r}: not in billing.accounts.")
    account_id, name, threshold, balance, updated = row
    data = {
        "account_id": account_id, "name": name, "balance": balance,
        "low_balance_threshold": threshold, "state": balance_state(balance, threshold),
        "balance_updated_at": updated,
    }
    meaning = {
        "healthy": "normal operation",
        "low_balance": f"the balance is at or below the warning threshold of {credits(threshold)}",
        "grace_period": "the balance is used up: routing is disabled until credits are added",
    }
    emit(args, data, lambda d: (
        f"Account {account_id} ({name}): balance {credits(balance)} credits.\n"
        f"State: {d['state']} — {meaning[d['state']]}."
    ))
    return 0
