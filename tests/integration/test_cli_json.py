"""Every command's `--json` is one document on stdout that validates against its schema in
docs/schemas/, with decimals as strings with six places; errors are JSON on stderr."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator, FormatChecker

from billing_pipeline.cli.main import main
from billing_pipeline.db import connect
from billing_pipeline.ledger.deduction import settle_priced_usage
from tests.support import dbt as d
from tests.support.kube import kube
from tests.support.platform import create_accounts

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"
UTC = UTC
HOUR = datetime(2026, 11, 24, 10, tzinfo=UTC)
SIX_PLACES = re.compile(r"^-?\d+\.\d{6}$")


def validate(name: str, document) -> None:
    schema = json.loads((SCHEMAS / f"{name}.json").read_text())
    Draft202012Validator.check_schema(schema)
    errors = sorted(Draft202012Validator(schema, format_checker=FormatChecker()).iter_errors(document), key=str)
    assert not errors, f"{name}: " + "; ".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors[:5])


def json_out(capsys, *argv: str, code: int = 0):
    """Run the command; stdout must be exactly one JSON document, stderr empty."""
    assert main(list(argv)) == code
    out, err = capsys.readouterr()
    assert err == "", err
    return json.loads(out)


def no_bare_decimals(document) -> None:
    """Every string that looks like a number carries six places (the amounts of docs/rules/units.md)."""
    if isinstance(document, dict):
        for value in document.values():
            no_bare_decimals(value)
    elif isinstance(document, list):
        for value in document:
            no_bare_decimals(value)
    elif isinstance(document, str) and re.fullmatch(r"-?\d+(\.\d+)?", document):
        assert SIX_PLACES.match(document), f"{document!r} is not a decimal with six places"


@pytest.fixture
def cli_db(db_url):
    create_accounts(db_url, "acme", "initech")
    return db_url


def test_every_schema_is_valid_json_schema():
    names = sorted(p.stem for p in SCHEMAS.glob("*.json"))
    assert {
        "error",
        "db-upgrade",
        "ledger",
        "posting",
        "verify",
        "status",
        "explain",
        "cleanup-preview",
        "run",
        "docs",
        "invoice",
    } <= set(names)
    for name in names:
        Draft202012Validator.check_schema(json.loads((SCHEMAS / f"{name}.json").read_text()))


def test_ledger_commands_validate(cli_db, capsys):
    validate("db-upgrade", json_out(capsys, "db", "upgrade", "--json"))
    first = json_out(capsys, "--json", "topup", "acme", "12", "--reference", "pay-1")
    validate("posting", first)
    assert first["amount"] == "12.000000" and first["balance_after"] == "12.000000"
    again = json_out(capsys, "topup", "acme", "12", "--reference", "pay-1", "-o", "json")
    validate("posting", again)
    assert again["created"] is False
    adjusted = json_out(capsys, "adjust", "acme", "-0.5", "--reason", "goodwill", "--actor", "ops", "--json")
    validate("posting", adjusted)
    assert adjusted["amount"] == "-0.500000"

    page = json_out(capsys, "ledger", "acme", "--json")
    validate("ledger", page)
    no_bare_decimals(page)
    assert (page["balance"], page["total_entries"], page["shown"], page["next_before"]) == ("11.500000", 2, 2, None)
    empty = json_out(capsys, "ledger", "initech", "--json")
    validate("ledger", empty)
    assert empty["balance"] == "0.000000"  # never a bare "0"

    report = json_out(capsys, "verify", "--json")
    validate("verify", report)
    assert report["ok"] is True


def test_status_validates(cli_db, capsys, frozen_clock):
    frozen_clock.set("2026-11-24T15:00:00Z")  # the top-up is posted before the status is read
    json_out(capsys, "topup", "acme", "12", "--reference", "pay-1", "--json")
    status = json_out(capsys, "status", "acme", "--json", "--now", "2026-11-24T16:00:00Z")
    validate("status", status)
    assert status["balance"] == "12.000000" and status["low_balance_threshold"] == "10.000000"


def test_cleanup_preview_validates(cli_db, capsys, kube, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(kube.kubeconfig_path))
    preview = json_out(capsys, "cleanup-preview", "acme", "--json", "--now", "2026-11-24T16:00:00Z")
    validate("cleanup-preview", preview)


def test_errors_are_one_json_document_on_stderr(cli_db, capsys):
    cases = [
        (("ledgr", "acme", "--json"), 2, "usage"),
        (("--json", "ledger", "nobody"), 2, "unknown_account"),
        (("explain", "acme", "--month", "2026-13", "-o", "json"), 2, "invalid_input"),
        (("topup", "acme", "abc", "--reference", "r", "--json"), 2, "invalid_input"),
        (("adjust", "acme", "5000", "--reason", "big", "--actor", "ops", "--json"), 2, "confirmation_required"),
    ]
    for argv, code, kind in cases:
        try:
            got = main(list(argv))
        except SystemExit as exc:  # argparse's usage errors leave through SystemExit, as argparse does
            got = exc.code
        out, err = capsys.readouterr()
        assert got == code and out == "", (argv, out, err)
        error = json.loads(err)
        validate("error", error)
        assert error["code"] == kind and error["exit_code"] == code, (argv, error)


def test_docs_validates(db_url, tmp_path, capsys):
    validate("docs", json_out(capsys, "docs", "--output", str(tmp_path / "site"), "--json"))
    manifest = json.loads((tmp_path / "site" / "manifest.json").read_text())
    overview = manifest["docs"]["doc.satusky_billing.__overview__"]["block_contents"]
    assert "Two measurements, never the same thing" in overview


@pytest.fixture
def priced_month(cli_db, tmp_path, frozen_clock):
    """Two accounts, one hour: acme rents node-a and runs on it (covered); initech runs on node-a
    too (an exception) and on the shared node-s. Priced by dbt, settled into the ledger."""
    url = cli_db
    d.add_standard_prices(url, {"std-4": "0.500000"})
    d.add_deployment(url, "dep-acme", "acme")
    d.add_deployment(url, "dep-initech", "initech")
    d.add_rental(url, "r-acme", "acme", "std-4", "node-a", HOUR, HOUR + timedelta(hours=1))
    d.add_container_hour(
        url,
        HOUR,
        "acme-1",
        deployment_id="dep-acme",
        account_id="acme",
        node="node-a",
        cpu_usage="1.5",
        cpu_request="1",
        mem_usage="2",
        mem_request="2",
    )
    d.add_container_hour(
        url,
        HOUR,
        "initech-1",
        deployment_id="dep-initech",
        account_id="initech",
        node="node-a",
        cpu_usage="0.5",
        cpu_request="0.5",
        mem_usage="1",
        mem_request="1",
    )
    d.add_container_hour(
        url,
        HOUR,
        "initech-2",
        deployment_id="dep-initech",
        account_id="initech",
        node="node-s",
        cpu_usage="0.25",
        cpu_request="0.25",
        mem_usage="1",
        mem_request="1",
    )
    d.mark_hours(url, HOUR, 1)
    d.build(url, tmp_path, start=HOUR, vars={"as_of": (HOUR + timedelta(hours=1)).isoformat()})
    frozen_clock.set(HOUR + timedelta(hours=1, minutes=5))  # settled just after its hour, inside November
    with connect(url) as conn:
        settle_priced_usage(conn, HOUR, HOUR + timedelta(hours=1))
        conn.commit()
    return url


@pytest.mark.slow
def test_explain_validates_and_reads_as_a_statement(priced_month, capsys, tmp_path):
    statement = json_out(capsys, "explain", "acme", "--month", "2026-11", "--json", "--detail")
    validate("explain", statement)
    no_bare_decimals(statement)
    assert [r["machine_type"] for r in statement["rented"]] == ["std-4"]
    assert statement["rented"][0]["amount"] == "0.500000"
    assert statement["covered_by_rentals"]["amount"] == "0.070000"  # 1.5 core-hours x 0.04 + 2 GiB-hours x 0.005
    assert statement["detail"] and all(e["priced_lines"] for e in statement["detail"])
    for entry in statement["detail"]:
        assert Decimal(entry["priced_total"]) == -Decimal(entry["amount"])

    other = json_out(capsys, "explain", "initech", "--month", "2026-11", "--json")
    validate("explain", other)
    assert [x["kind"] for x in other["exceptions"]] == ["reconciliation_exception"]
    assert "node-a" in other["exceptions"][0]["what_to_do"]

    assert main(["explain", "acme", "--month", "2026-11", "--detail"]) == 0
    text = capsys.readouterr().out
    assert "core_hour" not in text and "gib_hour" not in text  # units in words
    assert "core-hours" in text and "GiB-hours" in text and "machine-hours" in text
    assert text.count("covered consumption worth") == 1 and "+0.070000 credits" in text  # said once, in credits
    assert "Nothing needs attention." in text
    assert "Trail: each usage ledger entry" in text and "m-r-acme (std-4)" in text

    page = tmp_path / "acme.html"
    written = json_out(capsys, "explain", "acme", "--month", "2026-11", "--html", str(page), "--json")
    validate("explain", written)
    html = page.read_text()
    assert written["html"] == str(page.resolve())
    # The invoice's chart (SVG, no JavaScript): acme's rented machine and its consumption on 24 Nov.
    assert "<svg" in html and "<script" not in html and "Rented capacity" in html
    assert "24 Nov: Rented capacity 0.500000" in html
    # The invoice's template family: one title, the statement in HTML tables (not terminal text in
    # <pre>), units in words, charges positive.
    assert html.count("<h1>") == 1 and "<pre>" not in html and 'class="lines"' in html
    assert "<td>Machines rented</td><td>std-4</td>" in html and "core_hour" not in html
    assert "covered consumption worth 0.070000 credits" in html and "Nothing needs attention." in html
    # Printed, the statement's page keeps inside the margins with no text over other text.
    from billing_pipeline.invoicing.document import write_pdf
    from tests.support.pdf_layout import layout_problems

    assert layout_problems(write_pdf(html, tmp_path / "acme.pdf")) == (1, [])

    assert main(["explain", "initech", "--month", "2026-11", "--detail"]) == 0
    text = capsys.readouterr().out
    assert "dep-initech" in text  # its consumption entries trail to the deployment's priced hours
    assert "Needs attention:" in text and "What to do:" in text and "node-a" in text
