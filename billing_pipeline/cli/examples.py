"""The "Examples:" that end every command's help (``billing COMMAND --help``), as kubectl's do.

Keyed by the command's path after ``billing`` ("db upgrade"). A command module may instead
pass its own ``epilog`` starting with "Examples:"; ``main`` adds these to every command that
has none, and ``tests/integration/test_cli_help.py`` holds every command to having some.
"""

from __future__ import annotations

EXAMPLES: dict[str, list[tuple[str, str]]] = {
    "": [
        ("billing accounts", "the accounts, their state and balance"),
        ("billing status acme", "one account: state, deadline, what happens at expiry"),
        ("billing explain acme --month 2026-11", "one month of an account's bill"),
        ("billing ledger acme --json", "any command as one JSON document"),
        ("billing COMMAND --help", "a command's arguments and examples"),
    ],
    "accounts": [
        ("billing accounts", "id, name, state and balance of every account"),
        ("billing accounts --json | jq -r '.accounts[].account_id'", "the ids, for a script"),
    ],
    "db": [("billing db upgrade", "create or migrate the billing schema")],
    "db upgrade": [
        ("billing db upgrade", "migrate the database BILLING_DATABASE_URL names"),
        ("billing db upgrade --create", "create the database first when the server lacks it"),
    ],
    "ledger": [
        ("billing ledger acme", "the 20 newest entries and the balance"),
        ("billing ledger acme --limit 5 --before 120", "the next page: 5 entries older than entry 120"),
        ("billing ledger acme -o json", "the same as one JSON document"),
    ],
    "topup": [
        ("billing topup acme 100 --reference pay_2026_11_001", "credit a payment of 100 credits"),
        ("billing topup acme 25.50 --reference pay_2026_11_002 --json", "the entry posted, as JSON"),
    ],
    "adjust": [
        ("billing adjust acme -5 --reason 'duplicate hour' --actor ops@satusky", "debit 5 credits"),
        ("billing adjust acme 1500 --reason 'goodwill' --actor TICKET-42 --yes", "above the limit: confirm"),
    ],
    "grant": [
        (
            "billing grant acme 50 --reference promo-2026-12 --reason 'welcome credits' --actor sales@satusky "
            "--expires 2027-01-31T00:00Z",
            "50 promotional credits, burned first, expiring end of January",
        ),
        (
            "billing grant acme 20 --reference sla-goodwill-7 --reason 'outage 2026-12-03' --actor ops@satusky "
            "--priority 5",
            "free credits that burn before every other grant",
        ),
    ],
    "grants": [
        ("billing grants acme", "open grants in burn order: granted, drawn, expired, remaining, expiry"),
        ("billing grants acme --all --json", "every grant, used and expired included, as JSON"),
    ],
    "verify": [
        ("billing verify", "check every balance, the hash chain and the issued invoices"),
        ("billing verify --checkpoint heads.json", "also check the chain heads kept outside the database"),
    ],
    "status": [
        ("billing status acme", "state, deadline and what happens at expiry"),
        ("billing status acme --now 2026-11-30T00:00Z", "the same as of another time"),
    ],
    "explain": [
        ("billing explain acme --month 2026-11", "the month's statement: rented vs consumed, settled"),
        ("billing explain acme --month 2026-11 --detail", "with each usage entry's priced hours"),
        ("billing explain acme --month 2026-11 --html statement.html", "also as an HTML page"),
    ],
    "cleanup-preview": [
        ("billing cleanup-preview acme", "what the cleanup would delete now (reads only)"),
        ("billing cleanup-preview acme --now 2026-12-31T00:00Z", "what it would delete at that time"),
    ],
    "run": [
        ("billing run --start 2026-11-24T10:00Z --end 2026-11-24T16:00Z", "six hours of the hourly cycle"),
        ("billing run --start 2026-11-24T10:00Z --end 2026-11-24T11:00Z --only ingestion,dbt", "two stages"),
    ],
    "close-month": [
        ("billing close-month 2026-11", "SLA credits, then one invoice per account"),
        ("billing close-month 2026-11 --now 2026-12-01T06:00Z", "with an explicit clock"),
        ("billing close-month 2026-11 --force", "close before every hour is settled or the wait has passed"),
    ],
    "invoice": [
        ("billing invoice acme --month 2026-11", "the issued invoice in words"),
        ("billing invoice acme --month 2026-11 --pdf invoice.pdf", "also as a PDF"),
        ("billing invoice acme --month CURRENT", "the draft of the month still open, marked as a draft"),
    ],
    "docs": [
        ("billing docs", "build the dbt documentation site under .billing/dbt-docs"),
        ("billing docs --output /tmp/dbt-docs", "build it elsewhere"),
    ],
}


def examples_text(path: str) -> str | None:
    """The "Examples:" block for the command at ``path``, or None when there is none."""
    examples = EXAMPLES.get(path)
    if not examples:
        return None
    lines = ["Examples:"]
    for command, what in examples:
        lines += [f"  # {what[0].upper()}{what[1:]}", f"  {command}", ""]
    return "\n".join(lines).rstrip()
