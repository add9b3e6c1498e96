"""Ledger commands: `billing ledger`, `topup`, `adjust` and `verify`."""

from __future__ import annotations

import os
import re
from datetime import UTC
from decimal import Decimal, InvalidOperation

from billing_pipeline.cli.inputs import parse_amount, parse_limit, parse_text
from billing_pipeline.cli.output import credits, emit, table
from billing_pipeline.core.errors import ConfigurationError, InputError

# The ledger package (and psycopg) load inside each handler: `billing --help` imports none of it.

# `billing adjust` asks for --yes above this many credits (either sign); BILLING_ADJUST_CONFIRM_ABOVE
# overrides it, e.g. 0 to confirm every adjustment.
ADJUST_CONFIRM_ABOVE_DEFAULT = Decimal("1000")


def register(subparsers, json_parent) -> None:
    p = subparsers.add_parser(
        "ledger",
        parents=[json_parent],
        help="an account's ledger entries, newest first",
        description="An account's ledger entries, newest first, with the balance. Pages with --limit and "
        "--before: the last line says how to see older entries.",
    )
    p.add_argument("account", help="the account id (billing.accounts.id), e.g. acme")
    p.add_argument("--limit", default=20, help="how many entries to show (default 20)")
    p.add_argument("--before", metavar="ENTRY_ID", help="show only entries older than this entry id (the next page)")
    p.set_defaults(handler=_ledger)

    p = subparsers.add_parser(
        "topup",
        parents=[json_parent],
        help="credit a payment received",
        description="Credit a payment received. The payment reference makes it exactly once: the same "
        "reference twice posts once (idempotency key topup:<reference>).",
    )
    p.add_argument("account", help="the account id (billing.accounts.id), e.g. acme")
    p.add_argument("amount", help="credits, a positive decimal, e.g. 100 or 25.50")
    p.add_argument("--reference", required=True, help="the payment's reference; the same reference posts once")
    p.add_argument(
        "--currency",
        default="usd",
        help="the currency the customer paid in, kept with the paid grant (ISO 4217, lower case; default usd)",
    )
    p.set_defaults(handler=_topup)

    p = subparsers.add_parser(
        "adjust",
        parents=[json_parent],
        help="post an admin adjustment (+ or -)",
        description="Post an admin adjustment (+ credits the account, - debits it), with a reason and who "
        "decided it. Above BILLING_ADJUST_CONFIRM_ABOVE credits (default 1000) it needs --yes.",
    )
    p.add_argument("account", help="the account id (billing.accounts.id), e.g. acme")
    p.add_argument("amount", help="signed credits, e.g. -5 or 12.5")
    p.add_argument("--reason", required=True, help="why, in words the customer may read")
    p.add_argument("--actor", required=True, help="who decided it (a person or ticket)")
    p.add_argument(
        "--key",
        help="a key of your own (posted as adjust:key:<KEY>); by default the key is derived from account, "
        "amount, reason and actor, so repeating the same command posts once. Give a new key to post an "
        "identical adjustment again.",
    )
    p.add_argument(
        "--yes", action="store_true", help="confirm an adjustment above BILLING_ADJUST_CONFIRM_ABOVE credits"
    )
    p.set_defaults(handler=_adjust)

    p = subparsers.add_parser(
        "verify",
        parents=[json_parent],
        help="check the ledger and the issued invoices",
        description="Check every account's ledger (balances, the balance cache, the keyed hash chain, the "
        "sealed pre-key entries) and every issued invoice (lines against their ledger entries, totals, "
        "recorded chain head, gapless numbering). Exit code 1 when anything disagrees.",
    )
    p.add_argument(
        "--checkpoint",
        metavar="FILE",
        help="a file outside the database: check the chain heads it holds, then write the current ones",
    )
    p.add_argument(
        "--seal-legacy",
        action="store_true",
        help="once, on a database that really holds entries from before the keyed chain (migration 0006): "
        "seal them under the ledger key, when that is all verify finds",
    )
    p.set_defaults(handler=_verify)


def _ledger(args) -> int:
    from billing_pipeline.db import connect
    from billing_pipeline.ledger import balance_of
    from billing_pipeline.ledger.queries import ledger_page

    args.limit = parse_limit(args.limit)
    if args.before is not None:
        args.before = parse_limit(args.before, what="--before", maximum=2**62)
    with connect() as conn:
        balance = balance_of(conn, args.account)  # refuses an unknown account
        page = ledger_page(conn, args.account, limit=args.limit, before=args.before)
    entries, total = page.entries, page.total_entries
    data = {
        "account_id": args.account,
        "balance": balance,
        "total_entries": total,
        "shown": len(entries),
        "before": args.before,
        "next_before": page.next_before,
        "entries": entries,
    }

    def render(d):
        out = [f"Ledger of {args.account}: balance {credits(balance)} credits."]
        if not entries:
            out.append("No entries" + (" older than that." if args.before else " yet."))
            return out
        out.append(
            table(
                ["entry", "time (UTC)", "type", ("amount", "right"), ("balance after", "right"), "reason (by)", "key"],
                (
                    [
                        e.id,
                        f"{e.created_at.astimezone(UTC):%Y-%m-%d %H:%M:%S}",
                        e.type,
                        credits(e.amount),
                        credits(e.balance_after),
                        f"{e.reason} ({e.actor})" if e.reason else "",
                        e.idempotency_key,
                    ]
                    for e in entries
                ),
            )
        )
        where = f" older than entry {args.before}" if args.before else ""
        footer = f"Showing {len(entries)} of {total} entries{where}, newest first."
        if d["next_before"]:
            footer += f" Older: billing ledger {args.account} --before {d['next_before']}"
        out.append(footer)
        return out

    emit(args, data, render)
    return 0


def posting_data(result) -> dict:
    """A ``ledger.PostResult`` as the posting commands print it (``--json`` and text)."""
    return {
        "entry_id": result.entry_id,
        "account_id": result.account_id,
        "type": result.type,
        "amount": result.amount,
        "balance_after": result.balance_after,
        "idempotency_key": result.idempotency_key,
        "created": result.created,
    }


def already_posted_text(d: dict) -> str:
    """What a posting command says when its key was posted before (``posting_data``)."""
    return (
        f"Already posted: key {d['idempotency_key']!r} is entry {d['entry_id']} "
        f"({d['type']} {credits(d['amount'])}); nothing new was written."
    )


def _report(args, result) -> int:
    """Print a ``ledger.PostResult``."""

    def render(d) -> str:
        if not d["created"]:
            return already_posted_text(d)
        return (
            f"Posted {d['type']} of {credits(d['amount'])} credits to {d['account_id']} "
            f"(entry {d['entry_id']}); balance now {credits(d['balance_after'])}."
        )

    emit(args, posting_data(result), render)
    return 0


def _topup(args) -> int:
    args.reference = parse_text(args.reference, what="--reference", max_length=200)
    amount = parse_amount(args.amount, positive=True)
    currency = (args.currency or "").strip()
    if not re.fullmatch(r"[a-z]{3}", currency, re.ASCII):
        raise InputError(
            f"--currency {args.currency!r} is not a currency code: give three lower-case letters (ISO 4217), e.g. usd."
        )
    from billing_pipeline.db import connect
    from billing_pipeline.ledger.manual import post_manual_topup

    with connect() as conn:
        return _report(args, post_manual_topup(conn, args.account, amount, args.reference, currency))


def adjust_confirm_above() -> Decimal:
    """The amount above which `billing adjust` needs --yes (BILLING_ADJUST_CONFIRM_ABOVE, default 1000)."""
    text = os.environ.get("BILLING_ADJUST_CONFIRM_ABOVE", "").strip()
    if not text:
        return ADJUST_CONFIRM_ABOVE_DEFAULT
    try:
        value = Decimal(text)
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite() or value < 0:
        raise ConfigurationError(
            f"BILLING_ADJUST_CONFIRM_ABOVE={text!r} is not an amount of credits; "
            "set it to a number such as 1000 (or 0 to confirm every adjustment)."
        )
    return value


def _adjust(args) -> int:
    amount = parse_amount(args.amount)
    args.reason = parse_text(args.reason, what="--reason", required=False)
    args.actor = parse_text(args.actor, what="--actor", required=False)
    limit = adjust_confirm_above()
    if abs(amount) > limit and not args.yes:
        error = InputError(
            f"an adjustment of {credits(amount)} credits to {args.account} is above "
            f"{limit:f} credits (BILLING_ADJUST_CONFIRM_ABOVE): nothing was posted. "
            "Check the amount and run the same command again with --yes."
        )
        error.code = "confirmation_required"
        raise error
    key = parse_text(args.key, what="--key", required=False, max_length=150)
    from billing_pipeline.db import connect
    from billing_pipeline.ledger.manual import post_adjustment

    with connect() as conn:
        return _report(args, post_adjustment(conn, args.account, amount, args.reason, args.actor, key))


def _verify(args) -> int:
    from billing_pipeline.db import connect
    from billing_pipeline.ledger import verify_ledger

    with connect() as conn:
        report = verify_ledger(conn, checkpoint=args.checkpoint, seal_legacy=args.seal_legacy)
    data = {
        "ok": report.ok,
        "accounts": report.accounts,
        "entries": report.entries,
        "invoices": report.invoices,
        "grants": report.grants,
        "grant_draws": report.grant_draws,
        "unkeyed_entries": report.unkeyed_entries,
        "key_ids": report.key_ids,
        "notes": report.notes,
        "kinds": report.kinds,  # findings per kind, e.g. {"invoice_line_mismatch": 1}
        "problems": [p.__dict__ for p in report.problems],
    }

    def render(d) -> str:
        if d["ok"]:
            return "\n".join(
                [
                    f"Ledger verified: {d['entries']} entries in {d['accounts']} accounts; balances, cache, "
                    f"hash chain and the {d['grants']} credit grants' draws agree"
                    + (
                        f", and so do the {d['invoices']} issued invoices and their numbering."
                        if d["invoices"]
                        else "; no invoice issued yet."
                    )
                ]
                + [f"  {n}." for n in d["notes"]]
            )
        lines = [f"Ledger verification FAILED: {len(report.problems)} problem(s) in {d['entries']} entries:"]
        lines += [f"  {p.account_id or 'ledger'}: [{p.kind}] {p.detail}" for p in report.problems]
        lines += [f"  {n}." for n in d["notes"]]
        return "\n".join(lines)

    emit(args, data, render)
    return 0 if report.ok else 1
