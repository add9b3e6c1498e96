"""`billing docs` builds the dbt documentation site from the live database."""

from __future__ import annotations

import json

from billing_pipeline.cli.main import main


def test_billing_docs_builds_the_site(db_url, tmp_path, capsys):
    out = tmp_path / "site"
    assert main(["docs", "--output", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["site"] == str(out / "static_index.html")
    html = (out / "static_index.html").read_text()
    assert "fct_priced_usage" in html and "fct_usage_reconciliation" in html
    manifest = json.loads((out / "manifest.json").read_text())
    model = manifest["nodes"]["model.satusky_billing.fct_account_balances"]
    assert model["columns"]["runway_hours"]["description"].startswith("available_balance / burn_rate_per_hour")
    assert (out / "catalog.json").exists()


def test_billing_docs_explains_an_unreachable_database(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("BILLING_DATABASE_URL", "postgresql://postgres@127.0.0.1:1/nowhere")
    assert main(["docs", "--output", str(tmp_path / "site")]) == 1
    err = capsys.readouterr().err
    assert "dbt docs generate failed" in err and "Traceback" not in err
