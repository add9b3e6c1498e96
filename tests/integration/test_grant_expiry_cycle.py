"""Grant expiry in the hourly cycle, through Dagster (issue 22, points 3 and 7): the
``ledger/grant_expiry`` asset runs after the settlement at the run's clock, its identity check
passes, the lifecycle takes the account into grace "because promotional credits expired", `billing
status` says so, the warning before another grant's expiry goes out once, and a second run of the
same hours posts, warns and sends nothing twice.

The stand-in marts replace ingestion and dbt (as in test_deduction_cycle.py); everything from the
settlement on is the real graph on a real Dagster instance."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import dagster as dg
import psycopg

from billing_pipeline.cli.main import main as billing
from billing_pipeline.ledger import Entry, post_entries
from billing_pipeline.orchestration import cycle
from tests.support.payments import (
    create_priced_usage_mart,
    replace_priced_usage,
    smtp_sink,
)
from tests.support.platform import create_accounts

D = Decimal
H = datetime(2026, 11, 24, 10, tzinfo=UTC)
EXPIRES = H + timedelta(hours=1)  # the promotional grant is valid for the 10:00 hour only


def after_dbt():
    from billing_pipeline.definitions import defs
    from billing_pipeline.orchestration.graph import stage_selection

    return list(stage_selection(["ledger", "payments", "lifecycle", "alerts"]).resolve(defs.resolve_asset_graph()))


def test_the_cycle_expires_a_promotional_grant_once_and_the_account_enters_grace_saying_why(
    db_url, monkeypatch, tmp_path, frozen_clock, smtp_sink, capsys
):
    """trial: paid 2, promotional 20 expiring 11:00; usage 5 at 10:00 (from the promotional grant)
    and 3 at 11:00 (not valid any more: 2 from the paid grant, 1 of debt). The run of 10:00-12:00 at
    12:00 settles both hours, expires the 15 left, and the balance 2 + 20 - 5 - 3 - 15 = -1 is grace.
    soon: a promotional grant of 8 expiring in three days: one warning."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("SMTP_HOST", smtp_sink.host)
    monkeypatch.setenv("SMTP_PORT", str(smtp_sink.port))
    create_accounts(db_url, "trial", "soon")
    frozen_clock.set(H - timedelta(hours=1))
    with psycopg.connect(db_url) as conn:
        post_entries(
            conn,
            [
                Entry("trial", "topup", D("2"), "pay-1", {"paid": {"amount": "2.00", "currency": "usd"}}),
                Entry("trial", "promotional_grant", D("20"), "promo-1", {"grant": {"expires_at": EXPIRES.isoformat()}}),
                Entry("soon", "topup", D("50"), "pay-2"),
                Entry(
                    "soon",
                    "promotional_grant",
                    D("8"),
                    "promo-2",
                    {"grant": {"expires_at": (H + timedelta(days=3)).isoformat()}},
                ),
            ],
        )
        grant, soon_grant = (
            conn.execute("SELECT id FROM billing.credit_transactions WHERE idempotency_key = %s", (k,)).fetchone()[0]
            for k in ("promo-1", "promo-2")
        )
    create_priced_usage_mart(db_url)
    replace_priced_usage(db_url, H, [("trial", "workload_consumption", "cpu", "5")])
    replace_priced_usage(db_url, EXPIRES, [("trial", "workload_consumption", "cpu", "3")])

    frozen_clock.set(H + timedelta(hours=2, minutes=5))
    for _ in range(2):
        result = cycle.run_billing_window(
            H, H + timedelta(hours=2), now=H + timedelta(hours=2), asset_selection=after_dbt()
        )
        assert [r.status for r in result.runs] == ["SUCCESS"] and result.problems == []
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs()
        assert len(runs) == 2
        checks = [
            (e.check_name, e.passed)
            for r in runs
            for e in (
                record.event_log_entry.dagster_event.event_specific_data
                for record in instance.get_records_for_run(
                    r.run_id, of_type={dg.DagsterEventType.ASSET_CHECK_EVALUATION}
                ).records
            )
            if e.asset_key == dg.AssetKey(["ledger", "grant_expiry"])
        ]
        assert checks == [("balance_equals_open_grants_minus_debt", True)] * 2

    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT account_id, type, amount, idempotency_key, reason FROM billing.credit_transactions "
            "WHERE type IN ('usage_deduction', 'grant_expiry') ORDER BY id"
        ).fetchall()
        draws = conn.execute(
            "SELECT t.type, d.grant_entry_id, d.amount FROM billing.grant_draws d "
            "JOIN billing.credit_transactions t ON t.id = d.entry_id WHERE t.account_id = 'trial' ORDER BY d.id"
        ).fetchall()
        debt = conn.execute("SELECT sum(outstanding) FROM billing.grant_debts WHERE account_id = 'trial'").fetchone()[0]
        states = dict(conn.execute("SELECT account_id, state FROM billing.account_lifecycle").fetchall())
        outbox = conn.execute(
            "SELECT account_id, kind, dedupe_key, subject FROM billing.notification_outbox ORDER BY id"
        ).fetchall()
    paid_grant = grant - 1
    assert [r[:4] for r in rows] == [
        ("trial", "usage_deduction", D("-5.000000"), f"usage:trial:{H:%Y-%m-%dT%H:%M:%S+00:00}:workload_consumption"),
        (
            "trial",
            "usage_deduction",
            D("-3.000000"),
            f"usage:trial:{EXPIRES:%Y-%m-%dT%H:%M:%S+00:00}:workload_consumption",
        ),
        ("trial", "grant_expiry", D("-15.000000"), f"grant_expiry:{grant}"),
    ]
    assert rows[-1][4] == "promotional credits expired"
    assert draws == [
        ("usage_deduction", grant, D("5.000000")),
        ("usage_deduction", paid_grant, D("2.000000")),
        ("grant_expiry", grant, D("15.000000")),
    ]
    assert debt == D("1.000000")
    assert states == {"trial": "grace_period", "soon": "healthy"}
    assert [(a, k, key) for a, k, key, _ in outbox] == [
        ("soon", "grant_expiry_warning", f"grant_expiry_warning:{soon_grant}"),
        ("trial", "lifecycle_grace_period", "lifecycle:trial:grace:1"),
    ]
    assert outbox[0][3] == "Satusky: 8.000000 promotional credits on account soon expire on 2026-11-27 10:00 UTC"
    assert outbox[1][3].startswith("Account trial: promotional credits expired, deletion on ")
    # Delivered once each, by email, though the cycle ran twice.
    assert sorted(" ".join(m["Subject"].split()) for m in smtp_sink.messages) == sorted(s for *_, s in outbox)

    assert billing(["status", "trial", "--now", (H + timedelta(hours=2)).isoformat(), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["state"] == "grace_period" and status["balance"] == "-1.000000"
    assert status["cause"]["text"] == (
        f"Promotional credits expired (grant {grant}: 15.000000 credits expired on 2026-11-24 11:00 UTC)."
    )
