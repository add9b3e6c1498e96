"""Credit grant commands (docs/rules/credit-reports.md): `billing grant` posts a promotional grant, `billing grants`
lists an account's grants in the order usage burns them."""

from __future__ import annotations

from datetime import UTC
from decimal import Decimal

from billing_pipeline.cli.inputs import parse_amount, parse_text, parse_time
from billing_pipeline.cli.ledger_commands import adjust_confirm_above, already_posted_text, posting_data
from billing_pipeline.cli.output import credits, emit, table
from billing_pipeline.core.clock import system_now
from billing_pipeline.core.errors import InputError
from billing_pipeline.core.times import MAX_INPUT_LENGTH, shown

MAX_PRIORITY = 1000


def register(subparsers, json_parent) -> None:
    p = subparsers.add_parser(
        "grant",
        parents=[json_parent],
        help="give an account promotional (free) credits",
        description="Give an account promotional credits: a free grant, burned before paid credits (priority 10 "
        "by default; lower burns first), optionally expiring. The reference makes it exactly once: the same "
        "reference twice posts once (idempotency key promotional_grant:<reference>). Above "
        "BILLING_ADJUST_CONFIRM_ABOVE credits (default 1000) it needs --yes.",
    )
    p.add_argument("account", help="the account id (billing.accounts.id), e.g. acme")
    p.add_argument("amount", help="credits, a positive decimal, e.g. 100 or 25.50")
    p.add_argument("--reference", required=True, help="the grant's reference (campaign, ticket); posts once")
    p.add_argument("--reason", required=True, help="why, in words the customer may read")
    p.add_argument("--actor", required=True, help="who decided it (a person or ticket)")
    p.add_argument(
        "--expires", metavar="ISO", help="when what is left of it expires, ISO 8601 (e.g. 2026-12-31T00:00Z)"
    )
    p.add_argument(
        "--priority",
        metavar="N",
        help=f"burn order, 0 to {MAX_PRIORITY}: lower burns first (default 10; SLA credits 20, adjustments 30, "
        "paid 50)",
    )
    p.add_argument("--yes", action="store_true", help="confirm a grant above BILLING_ADJUST_CONFIRM_ABOVE credits")
    p.set_defaults(handler=_grant)

    p = subparsers.add_parser(
        "grants",
        parents=[json_parent],
        help="an account's credit grants, in burn order",
        description="An account's credit grants in the order usage burns them (priority, earliest expiry, "
        "oldest): kind (paid or free), source, priority, granted, drawn, expired, remaining and expiry. "
        "Open grants (credits left) only, unless --all.",
    )
    p.add_argument("account", help="the account id (billing.accounts.id), e.g. acme")
    p.add_argument("--all", action="store_true", help="also the grants used up or expired")
    p.set_defaults(handler=_grants)


def parse_priority(text: str | None) -> int | None:
    """``--priority``: a whole number from 0 to ``MAX_PRIORITY``."""
    if text is None:
        return None
    value = str(text).strip()
    if len(value) > MAX_INPUT_LENGTH or not value.isascii() or not value.lstrip("+-").isdigit():
        raise InputError(f"--priority {shown(text)} must be a whole number from 0 to {MAX_PRIORITY}, e.g. 10.")
    number = int(value)
    if not 0 <= number <= MAX_PRIORITY:
        raise InputError(f"--priority {number} must be from 0 to {MAX_PRIORITY} (lower burns first; default 10).")
    return number


def _grant(args) -> int:
    amount = parse_amount(args.amount, positive=True)
    reference = parse_text(args.reference, what="--reference", max_length=150)
    reason = parse_text(args.reason, what="--reason")
    actor = parse_text(args.actor, what="--actor")
    priority = parse_priority(args.priority)
    expires_at = None
    if args.expires is not None:
        expires_at = parse_time(args.expires, what="--expires")
        now = system_now()
        if expires_at <= now:
            raise InputError(
                f"--expires {expires_at:%Y-%m-%dT%H:%MZ} is not in the future (now {now:%Y-%m-%dT%H:%MZ}): "
                "a grant that has already expired gives nothing. Give a later time."
            )
    limit = adjust_confirm_above()
    if amount > limit and not args.yes:
        error = InputError(
            f"a grant of {credits(amount)} credits to {args.account} is above {limit:f} credits "
            "(BILLING_ADJUST_CONFIRM_ABOVE): nothing was posted. Check the amount and run the same command "
            "again with --yes."
        )
        error.code = "confirmation_required"
        raise error
    # The database and the ledger load when the command runs, not for --help (cli/main.py).
    from billing_pipeline.db import connect
    from billing_pipeline.ledger import balance_of
    from billing_pipeline.ledger.grant_queries import grant_terms
    from billing_pipeline.ledger.manual import post_promotional_grant

    with connect() as conn:
        balance_of(conn, args.account)  # refuses an unknown account, with a suggestion
        result = post_promotional_grant(
            conn, args.account, amount, reference, reason, actor, expires_at=expires_at, priority=priority
        )
        terms = grant_terms(conn, result.entry_id)
    kind, granted_priority, granted_expiry = terms if terms else ("free", priority, expires_at)
    data = {
        **posting_data(result),
        "grant": {"kind": kind, "priority": granted_priority, "expires_at": granted_expiry},
    }

    def render(d) -> str:
        if not d["created"]:
            return already_posted_text(d)
        g = d["grant"]
        expiry = f"expires {g['expires_at'].astimezone(UTC):%Y-%m-%d %H:%M} UTC" if g["expires_at"] else "no expiry"
        return (
            f"Granted {credits(d['amount'])} promotional credits to {d['account_id']} (entry {d['entry_id']}, "
            f"priority {g['priority']}, {expiry}); balance now {credits(d['balance_after'])}."
        )

    emit(args, data, render)
    return 0


def _grants(args) -> int:
    from billing_pipeline.db import connect
    from billing_pipeline.ledger import balance_of
    from billing_pipeline.ledger.grant_queries import account_debt, account_grants

    with connect() as conn:
        balance = balance_of(conn, args.account)  # refuses an unknown account
        grants = account_grants(conn, args.account, include_closed=args.all)
        debt = account_debt(conn, args.account)
    open_total = sum((g.remaining for g in grants if g.remaining > 0), Decimal(0))
    data = {
        "account_id": args.account,
        "balance": balance,
        "open_remaining": open_total,
        "debt": debt,
        "all": args.all,
        "grants": [g._asdict() for g in grants],
    }

    def render(d):
        out = [
            f"Grants of {args.account}: {credits(open_total)} credits left in open grants, debt "
            f"{credits(debt)}; balance {credits(balance)} credits."
        ]
        if not grants:
            out.append("No grants" + (" yet." if args.all else " with credits left (--all shows every grant)."))
            return out
        out.append(
            table(
                [
                    "entry",
                    "kind",
                    "source",
                    ("priority", "right"),
                    ("granted", "right"),
                    ("drawn", "right"),
                    ("expired", "right"),
                    ("remaining", "right"),
                    "expires (UTC)",
                    "status",
                ],
                (
                    [
                        g.entry_id,
                        g.kind,
                        g.source_type,
                        g.priority,
                        credits(g.granted),
                        credits(g.drawn),
                        credits(g.expired),
                        credits(g.remaining),
                        f"{g.expires_at.astimezone(UTC):%Y-%m-%d %H:%M}" if g.expires_at else "never",
                        g.status,
                    ]
                    for g in grants
                ),
            )
        )
        out.append("In burn order: lower priority first, then the earliest expiry, then the oldest.")
        return out

    emit(args, data, render)
    return 0
