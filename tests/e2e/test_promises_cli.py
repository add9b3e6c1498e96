"""README promises of the command line, through the installed `billing` console script as a
subprocess: `billing ledger --limit`, `billing adjust --json` (posts once, `--key` posts again),
`billing explain --json`."""

from __future__ import annotations

import json
import os
import subprocess
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from tests.integration.test_cli_json import cli_db, priced_month, validate

BILLING = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "billing")
D = Decimal


def billing(url: str, *argv: str) -> tuple[int, dict | None, str]:
    proc = subprocess.run(
        [BILLING, *argv], env={**os.environ, "BILLING_DATABASE_URL": url}, capture_output=True, text=True, timeout=300
    )
    document = json.loads(proc.stdout) if "--json" in argv and proc.stdout.strip() else None
    return proc.returncode, document, proc.stderr


def test_ledger_limit_shows_the_newest_n_and_pages_to_the_rest(cli_db):
    for n, amount in enumerate(["10", "20", "30", "40", "50"], start=1):
        assert billing(cli_db, "topup", "acme", amount, "--reference", f"pay-{n}")[0] == 0
    code, page, err = billing(cli_db, "ledger", "acme", "--limit", "2", "--json")
    assert code == 0 and err == ""
    validate("ledger", page)
    assert [e["amount"] for e in page["entries"]] == ["50.000000", "40.000000"]  # newest first, two of them
    assert [e["balance_after"] for e in page["entries"]] == ["150.000000", "100.000000"]
    assert (page["shown"], page["total_entries"], page["balance"]) == (2, 5, "150.000000")
    code, rest, _ = billing(cli_db, "ledger", "acme", "--limit", "10", "--before", str(page["next_before"]), "--json")
    assert code == 0 and [e["amount"] for e in rest["entries"]] == ["30.000000", "20.000000", "10.000000"]
    assert rest["next_before"] is None
    code, _, err = billing(cli_db, "ledger", "acme", "--limit", "0")
    assert code == 2 and "--limit" in err


def test_adjust_json_posts_once_and_a_key_posts_a_deliberate_second(cli_db):
    argv = ("adjust", "acme", "-12.5", "--reason", "goodwill correction", "--actor", "ops@satusky", "--json")
    code, first, err = billing(cli_db, *argv)
    assert code == 0 and err == ""
    validate("posting", first)
    assert (first["type"], first["amount"], first["balance_after"], first["created"]) == (
        "admin_adjustment",
        "-12.500000",
        "-12.500000",
        True,
    )
    code, again, _ = billing(cli_db, *argv)
    assert code == 0 and again["created"] is False and again["entry_id"] == first["entry_id"]
    code, second, _ = billing(cli_db, *argv, "--key", "second-correction")
    assert code == 0 and second["created"] is True and second["balance_after"] == "-25.000000"
    with psycopg.connect(cli_db) as conn:
        rows = conn.execute(
            "SELECT amount, reason, actor FROM billing.credit_transactions WHERE account_id = 'acme' ORDER BY id"
        ).fetchall()
    assert rows == [(D("-12.5"), "goodwill correction", "ops@satusky")] * 2


@pytest.mark.slow
def test_explain_json_through_the_console_script(priced_month):
    code, statement, err = billing(priced_month, "explain", "acme", "--month", "2026-11", "--json")
    assert code == 0 and err == ""
    validate("explain", statement)
    assert [(r["machine_type"], r["amount"]) for r in statement["rented"]] == [("std-4", "0.500000")]
    # 1.5 core-hours x 0.04 + 2 GiB-hours x 0.005 of acme's own consumption on its rented node.
    assert statement["covered_by_rentals"]["amount"] == "0.070000"
    assert statement["usage_deducted"] == statement["priced_usage_total"] and statement["not_yet_settled"] == "0.000000"
    # The money is the month's invoice as it stands (November is not closed): opening + lines = closing.
    invoice = statement["invoice"]
    assert invoice["status"] == "open" and invoice["invoice_number"] is None
    assert D(invoice["opening"]) + sum(D(line["amount"]) for line in invoice["lines"]) == D(invoice["closing"])
    usage_lines = sum(D(line["amount"]) for line in invoice["lines"] if line["line_type"] == "usage")
    assert usage_lines == -D(statement["usage_deducted"])
    assert statement["exceptions"] == []
    code, other, _ = billing(priced_month, "explain", "initech", "--month", "2026-11", "--json")
    assert code == 0 and [x["kind"] for x in other["exceptions"]] == ["reconciliation_exception"]
