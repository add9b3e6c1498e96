"""Ledger commands: `billing ledger`, `topup`, `adjust` and `verify`."""

from __future__ import annotations

import hashlib

from billing_pipeline.cli.inputs import parse_amount, parse_limit, parse_text
from billing_pipeline.cli.output import credits, emit
from billing_pipeline.db import connect
from billing_pipeline.ledger import Entry, EntryType, balance_of, post_entry, verify_ledger


def register(subparsers, json_parent) -> None:
    p = subparsers.add_parser("ledger", parents=[json_parent], help="an account's ledger entries, newest first")
    p.add_argument("account")
    p.add_argument("--limit", default=50, help="how many entries (default 50)")
    p.set_defaults(handler=_ledger)

    p = subparsers.add_parser("topup", parents=[json_parent], help="credit a payment received")
    p.add_argument("account")
    p.add_argument("amount", help="credits, as a decimal, e.g. 100 or 25.50")
    p.add_argument("--reference", required=True, help="the payment's reference; also its idempotency key")
    p.set_defaults(handler=_topup)

    p = subparsers.add_parser("adjust", parents=[json_parent], help="post an admin adjustment (+ or -)")
    p.add_argument("account")
    p.add_argument("amount", help="signed credits, e.g. -5 or 12.5")
    p.add_argument("--reason", required=True)
    p.add_argument("--actor", required=True, help="who decided it")
    p.add_argument(
        "--key",
        help="idempotency key; default derived from account, amount, reason and actor, so repeating "
        "the same command posts once. Give a new key to post an identical adjustment again.",
    )
    p.set_defaults(handler=_adjust)

    p = subparsers.add_parser("verify", parents=[json_parent], help="check balances, cache and hash chain")
    p.add_argument("--checkpoint", help="a file outside the database: check the chain heads it holds, then write the current ones")
    p.set_defaults(handler=_verify)


def _ledger(args) -> int:
    args.limit = parse_limit(args.limit)
    with connect() as conn:
        balance = balance_of(conn, args.account)
        rows = conn.execute(
            "SELECT id, created_at, type, amount, balance_after, idempotency_key, reason, actor, reference "
            "FROM billing.credit_transactions WHERE account_id = %s ORDER BY account_seq DESC LIMIT %s",
            (args.account, args.limit),
        ).fetchall()
    entries = [
        dict(zip(("id", "created_at", "type", "amount", "balance_after", "idempotency_key", "reason", "actor", "reference"), r))
        for r in rows
    ]

    def render(d) -> str:
        lines = [f"Ledger of {args.account}: balance {credits(balance)} credits"]
        if not entries:
            lines.append("  (no entries yet)")
        for e in entries:
            why = f"  {e['reason']} ({e['actor']})" if e["reason"] else ""
            lines.append(
                f"  #{e['id']:<7} {e['created_at']:%Y-%m-%d %H:%M:%S} {e['type']:<16} "
                f"{credits(e['amount']):>18} -> {credits(e['balance_after']):>18}  [{e['idempotency_key']}]{why}"
            )
        return "\n".join(lines)

    emit(args, {"account_id": args.account, "balance": balance, "entries": entries}, render)
    return 0


def _post_and_report(args, entry: Entry) -> int:
    with connect() as conn:
        result = post_entry(conn, entry)
    data = {
        "entry_id": result.entry_id, "account_id": result.account_id, "type": result.type,
        "amount": result.amount, "balance_after": result.balance_after,
        "idempotency_key": result.idempotency_key, "created": result.created,
    }

    def render(d) -> str:
        if d["created"]:
            return (f"Posted {d['type']} of {credits(d['amount'])} credits to {d['account_id']} "
                    f"(entry {d['entry_id']}); balance now {credits(d['balance_after'])}.")
        return (f"Already posted: key {d['idempotency_key']!r} is entry {d['entry_id']} "
                f"({d['type']} {credits(d['amount'])}); nothing new was written.")

    emit(args, data, render)
    return 0


def _topup(args) -> int:
    args.reference = parse_text(args.reference, what="--reference", max_length=200)
    entry = Entry(args.account, EntryType.TOPUP, parse_amount(args.amount, positive=True), args.reference,
                  reference={"payment_reference": args.reference}, actor="cli")
    return _post_and_report(args, entry)


def _adjust(args) -> int:
    amount = parse_amount(args.amount)
    args.reason = parse_text(args.reason, what="--reason", required=False)
    args.actor = parse_text(args.actor, what="--actor", required=False)
    key = args.key or "adjust:" + hashlib.sha256(
        "\x1f".join([args.account, f"{amount}", args.reason or "", args.actor or ""]).encode()
    ).hexdigest()[:32]
    entry = Entry(args.account, EntryType.ADMIN_ADJUSTMENT, amount, key, reason=args.reason, actor=args.actor)
    return _post_and_report(args, entry)


def _verify(args) -> int:
    with connect() as conn:
        report = verify_ledger(conn, checkpoint=args.checkpoint)
    data = {
        "ok": report.ok, "accounts": report.accounts, "entries": report.entries,
        "unkeyed_entries": report.unkeyed_entries, "key_ids": report.key_ids, "notes": report.notes,
        "problems": [p.__dict__ for p in report.problems],
    }

    def render(d) -> str:
        if d["ok"]:
            return "\n".join([f"Ledger verified: {d['entries']} entries in {d['accounts']} accounts; balances, cache "
                              "and hash chain agree."] + [f"  {n}." for n in d["notes"]])
        lines = [f"Ledger verification FAILED: {len(report.problems)} problem(s) in {d['entries']} entries:"]
        lines += [f"  {p.account_id}: [{p.kind}] {p.detail}" for p in report.problems]
        return "\n".join(lines)

    emit(args, data, render)
    return 0 if report.ok else 1
