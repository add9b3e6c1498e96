"""The cycle's settlement, top-up, lifecycle and alert stages through Dagster (the instance of
DAGSTER_HOME, the real Definitions' resources reading the emulators' settings from the
environment); a second cycle does nothing twice; a missing Stripe key fails only the top-ups."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import dagster as dg
import psycopg

from billing_pipeline.orchestration import cycle
from devkit.emulators.stripe_emulator import create_customer_with_card, payment_intents
from tests.support.payments import (
    WEBHOOK_SECRET,
    configure_account,
    create_priced_usage_mart,
    post,
    replace_priced_usage,
    smtp_sink,
    stripe_emulator,
    webhook_receiver,
)
from tests.support.platform import create_accounts

H = datetime(2026, 11, 24, 10, tzinfo=UTC)


def cycle_step_verb(event_type) -> str:
    return {dg.DagsterEventType.STEP_START: "started", dg.DagsterEventType.STEP_SUCCESS: "done"}[event_type]


def after_dbt():
    """The cycle from the settlement on (the stand-in marts replace ingestion and dbt here)."""
    from billing_pipeline.definitions import defs
    from billing_pipeline.orchestration.graph import stage_selection

    return list(stage_selection(["ledger", "payments", "lifecycle", "alerts"]).resolve(defs.resolve_asset_graph()))


def test_cycle_stages_deduct_top_up_and_notify_once(
    db_url, monkeypatch, tmp_path, stripe_emulator, smtp_sink, webhook_receiver
):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    for key, value in {
        "STRIPE_API_KEY": stripe_emulator.api_key,
        "STRIPE_API_BASE": stripe_emulator.url,
        "SMTP_HOST": smtp_sink.host,
        "SMTP_PORT": str(smtp_sink.port),
        "BILLING_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }.items():
        monkeypatch.setenv(key, value)
    create_accounts(db_url, "acme", "globex")
    customer, method = create_customer_with_card(stripe_emulator.url, "acme@example.test")
    configure_account(
        db_url,
        "acme",
        auto_topup_enabled=True,
        auto_topup_amount=Decimal("40"),
        auto_topup_threshold=Decimal("10"),
        stripe_customer_id=customer,
        stripe_payment_method_id=method,
        notify_webhook_url=webhook_receiver.url,
    )
    post(db_url, "acme", "topup", "20", "t1")
    post(db_url, "globex", "topup", "20", "t2")
    create_priced_usage_mart(db_url)
    replace_priced_usage(
        db_url, H, [("acme", "workload_consumption", "cpu", "12.5"), ("globex", "machine_rental", "machine", "15")]
    )

    for _ in range(2):
        result = cycle.run_billing_window(
            H, H + timedelta(hours=1), now=H + timedelta(hours=2), asset_selection=after_dbt()
        )
        assert [r.status for r in result.runs] == ["SUCCESS"] and result.problems == []
    with dg.DagsterInstance.get() as instance:
        assert len(instance.get_runs()) == 2

    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT account_id, type, amount FROM billing.credit_transactions "
            "WHERE idempotency_key NOT IN ('t1', 't2') ORDER BY id"
        ).fetchall()
    assert rows == [
        ("acme", "usage_deduction", Decimal("-12.5")),
        ("globex", "usage_deduction", Decimal("-15")),
        ("acme", "auto_topup", Decimal("40")),
    ]
    assert len(payment_intents(stripe_emulator.url)) == 1
    # globex fell to 5 (low balance, no auto top-up); acme was topped up before the alert stage.
    subjects = sorted(m["Subject"] for m in smtp_sink.messages)
    assert subjects == ["Satusky: 40.00 credits added to account acme", "Satusky: low balance on account globex"]
    assert [r.headers["X-Satusky-Event"] for r in webhook_receiver.requests] == ["auto_topup_succeeded"]


def test_no_stripe_key_skips_only_the_top_ups(db_url, monkeypatch, tmp_path, smtp_sink):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    monkeypatch.setenv("SMTP_HOST", smtp_sink.host)
    monkeypatch.setenv("SMTP_PORT", str(smtp_sink.port))
    create_accounts(db_url, "acme", "globex")
    configure_account(
        db_url,
        "acme",
        auto_topup_enabled=True,
        auto_topup_amount=Decimal("40"),
        auto_topup_threshold=Decimal("10"),
        stripe_customer_id="cus_x",
        stripe_payment_method_id="pm_x",
    )
    post(db_url, "acme", "topup", "20", "t1")
    post(db_url, "globex", "topup", "20", "t2")
    create_priced_usage_mart(db_url)
    replace_priced_usage(
        db_url, H, [("acme", "workload_consumption", "cpu", "12.5"), ("globex", "machine_rental", "machine", "15")]
    )

    heard: list[str] = []
    result = cycle.run_billing_window(
        H, H + timedelta(hours=1), now=H + timedelta(hours=2), asset_selection=after_dbt(), on_progress=heard.append
    )
    # The run completes: settlement, lifecycle, alerts and deliveries all ran ...
    assert [r.status for r in result.runs] == ["SUCCESS"]
    # ... and the progress told of each step as the event log has it, in its order.
    with dg.DagsterInstance.get() as instance:
        logged = [
            f"{r.event_log_entry.dagster_event.step_key} {cycle_step_verb(r.event_log_entry.dagster_event_type)}"
            for r in instance.get_records_for_run(
                result.runs[0].run_id, of_type={dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS}
            ).records
        ]
    assert len(logged) >= 10 and [line.rsplit(": ", 1)[1] for line in heard if " chunk " in line] == logged
    with psycopg.connect(db_url) as conn:
        deducted = conn.execute(
            "SELECT account_id, amount FROM billing.credit_transactions "
            "WHERE type = 'usage_deduction' ORDER BY account_id"
        ).fetchall()
        states = dict(conn.execute("SELECT account_id, state FROM billing.account_lifecycle").fetchall())
    assert deducted == [("acme", Decimal("-12.5")), ("globex", Decimal("-15"))]
    assert states == {"acme": "low_balance", "globex": "low_balance"}
    assert sorted(m["Subject"] for m in smtp_sink.messages) == [
        "Satusky: low balance on account acme",
        "Satusky: low balance on account globex",
    ]
    # ... and the top-ups were skipped with the reason, not failed (issue 23): no problem for the
    # run's status, a warning naming the missing variable and the account that waits.
    assert result.problems == []
    (run,) = result.runs
    warned = {c["check"]: (c["severity"], c["description"]) for c in run.failed_checks}
    assert warned == {
        "every_topup_settled": (
            "WARN",
            "skipped: STRIPE_API_KEY is not set: auto top-up cannot charge anyone. Set it to the Stripe secret key "
            "(or a test key with STRIPE_API_BASE pointing at a local emulator). Accounts waiting for an auto "
            "top-up: acme.",
        ),
        "one_payment_intent_per_attempt": ("WARN", warned["one_payment_intent_per_attempt"][1]),
    }
    assert warned["one_payment_intent_per_attempt"][1].startswith("not checked: STRIPE_API_KEY is not set")
    # `billing run` prints them as warnings, apart from the problems that set its exit status.
    from billing_pipeline.cli.run_command import render

    text = render({**result.as_dict(), "log_file": "cycle.log"})
    assert "Warnings (the exit status stays 0):\n  payments/auto_topups (every_topup_settled): skipped: " in text
    assert "Problems" not in text
