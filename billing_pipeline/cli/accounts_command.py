"""`billing accounts`: every account with its name, lifecycle state and balance."""

from __future__ import annotations

from billing_pipeline.cli.output import credits, emit, table


def register(subparsers, json_parent) -> None:
    p = subparsers.add_parser(
        "accounts",
        parents=[json_parent],
        help="list the accounts: id, name, state and balance",
        description="Every account in billing.accounts with its name, lifecycle state and balance, by id. "
        "The ids are what every other command takes as ACCOUNT.",
    )
    p.set_defaults(handler=_accounts)


def render(d: dict):
    if not d["accounts"]:
        return "No accounts yet: billing.accounts is empty (the platform creates them)."
    rows = (
        [
            a["account_id"],
            a["name"],
            a["state"] if a["evaluated"] else f"{a['state']} (from the balance)",
            credits(a["balance"]),
        ]
        for a in d["accounts"]
    )
    return [
        table(["account", "name", "state", ("balance (credits)", "right")], rows),
        f"{d['count']} account(s). Details: billing status ACCOUNT.",
    ]


def _accounts(args) -> int:
    from billing_pipeline.db import connect
    from billing_pipeline.lifecycle.report import accounts_overview

    with connect() as conn:
        accounts = accounts_overview(conn)
    emit(args, {"count": len(accounts), "accounts": accounts}, render)
    return 0
