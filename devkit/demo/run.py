"""Run the whole pipeline on demo data and show the result (``scripts/demo``).

Database: BILLING_DATABASE_URL when set, else the local server on 127.0.0.1:5432 when it
answers, else an embedded PostgreSQL started under ./.billing. The demo then starts, on
127.0.0.1 only, a Prometheus serving the demo cluster's metrics, the Kubernetes API emulator,
localstripe, an SMTP sink and a webhook receiver; runs the hourly cycle through Dagster
(ingestion, dbt, deduction, auto top-up, alerts, lifecycle) for the demo hours; prints the
bill; walks one account through grace to expiry; closes the month (SLA credits, invoices) and
writes one invoice as HTML and PDF; stops every service it started; and writes ``demo.env`` with
the environment of the next steps it prints (``devkit.demo.env``).
Everything written is idempotent: run it again and nothing is posted, charged or sent twice.
"""

from __future__ import annotations

import os
import sys
from contextlib import ExitStack, redirect_stderr, redirect_stdout
from datetime import timedelta
from pathlib import Path

from billing_pipeline.cli.main import main as billing_cli
from billing_pipeline.cli.output import credits
from billing_pipeline.db.connection import connect, redact_url, state_dir
from billing_pipeline.db.dagster_instance import prepare_dagster_home
from billing_pipeline.db.migrate import upgrade
from billing_pipeline.ledger import Entry, EntryType, ensure_demo_ledger_key, verify_ledger
from billing_pipeline.ledger.keys import manual_topup_key, promotional_grant_key
from billing_pipeline.ledger.manual import post_once, topup_reference
from billing_pipeline.orchestration.cycle import run_billing_window
from devkit.clock import posted_at
from devkit.demo import platform
from devkit.demo.database import demo_database_url
from devkit.demo.env import display_path, write_demo_env
from devkit.demo.lifecycle import ACCOUNT as LIFECYCLE_ACCOUNT
from devkit.demo.lifecycle import run_lifecycle_demo
from devkit.demo.payments import local_payment_services, prepare_demo_accounts
from devkit.emulators.kube_emulator import KubeEmulator
from devkit.synthetic import PrometheusServer, ensure_tsdb


def section(title: str) -> None:
    print(f"\n== {title} ==", flush=True)


def table(conn, query: str, headers: list[str], params: tuple = ()) -> None:
    """Print a query's rows as an aligned table (queries here are fixed text, values bound)."""
    rows = [
        [credits(v) if hasattr(v, "as_tuple") else ("" if v is None else str(v)) for v in r]
        for r in conn.execute(query, params).fetchall()
    ]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    print("  " + "  ".join(h.ljust(w) for h, w in zip(headers, widths)))
    for r in rows:
        print("  " + "  ".join(v.rjust(w) if v[:1] in "+-" else v.ljust(w) for v, w in zip(r, widths)))
    if not rows:
        print("  (none)")


def post_opening_credit(conn) -> None:
    # Paid before the usage it pays for (platform.OPENING_CREDIT_AT), not at the wall clock.
    # A payment received, keyed as every manual top-up is (ledger.keys); a demo database from
    # before that key format still finds its entry (post_once), so a re-run posts nothing.
    with posted_at(platform.OPENING_CREDIT_AT):
        results = [
            post_once(
                conn,
                Entry(
                    account,
                    EntryType.TOPUP,
                    amount,
                    manual_topup_key(reference),
                    reference=topup_reference(reference, amount),
                    actor="demo",
                ),
            )
            for account, amount, reference in platform.OPENING_TOPUPS
        ] + [
            post_once(
                conn,
                Entry(
                    account,
                    EntryType.PROMOTIONAL_GRANT,
                    amount,
                    promotional_grant_key(reference),
                    reference={"grant": {"expires_at": expires_at.isoformat()}},
                    reason="trial credits",
                    actor="demo",
                ),
            )
            for account, amount, reference, expires_at in platform.PROMOTIONAL_GRANTS
        ]
    for r in results:
        verb = "posted" if r.created else "already posted"
        what = "promotional grant" if r.type == EntryType.PROMOTIONAL_GRANT else "top-up"
        print(f"  {r.account_id:<8} {what} {credits(r.amount)} ({verb}, entry {r.entry_id})")


def show_bill(conn) -> None:
    section("Priced usage, both streams side by side (analytics.fct_priced_usage)")
    table(
        conn,
        """
        SELECT account_id, usage_kind, resource, sum(quantity)::numeric(18,6) AS quantity, min(unit),
               sum(amount) AS amount,
               CASE WHEN bool_and(is_covered_by_rental) THEN 'yes' WHEN bool_or(is_covered_by_rental)
                    THEN 'partly' ELSE 'no' END AS covered,
               CASE WHEN bool_or(is_estimate) THEN 'yes' ELSE 'no' END AS estimate
        FROM analytics.fct_priced_usage GROUP BY 1, 2, 3 ORDER BY 1, 2, 3""",
        ["account", "usage kind", "resource", "quantity", "unit", "amount", "covered by rental", "estimate"],
    )

    section("Reconciliation per node: rented capacity vs consumption (analytics.fct_usage_reconciliation)")
    table(
        conn,
        """
        SELECT account_id, node_name, reconciliation_status, count(*) AS hours,
               sum(machine_hours_rented)::numeric(12,4), sum(cpu_core_hours_used)::numeric(12,4),
               sum(covered_consumption_amount) AS covered, sum(consumption_charged_amount) AS charged,
               max(exception_reason)
        FROM analytics.fct_usage_reconciliation GROUP BY 1, 2, 3 ORDER BY 1, 2, 3""",
        ["account", "node", "status", "hours", "machine-h", "core-h used", "covered", "charged", "exception"],
    )

    section("Balances, burn rate and runway (analytics.fct_account_balances, built after the settlement)")
    table(
        conn,
        """
        SELECT account_id, ledger_balance, usage_not_yet_deducted, burn_rate_per_hour,
               coalesce(round(runway_hours, 1)::text, 'n/a'), lifecycle_state
        FROM analytics.fct_account_balances ORDER BY 1""",
        ["account", "ledger balance", "not yet deducted", "burn/hour", "runway h", "state"],
    )

    section("Ledger entries posted by the jobs")
    table(
        conn,
        """
        SELECT account_id, type, count(*), sum(amount) FROM billing.credit_transactions
        GROUP BY 1, 2 ORDER BY 1, 2""",
        ["account", "type", "entries", "total"],
    )

    section("Notifications (billing.notification_outbox)")
    table(
        conn,
        """
        SELECT account_id, kind, subject FROM billing.notification_outbox ORDER BY id""",
        ["account", "kind", "subject"],
    )


DEMO_MONTH = f"{platform.DEMO_START:%Y-%m}"
# The demo closes its month an hour after it ended. Its other hours were never run, so it is not
# ready yet (invoicing.readiness): the demo closes it as an operator would, with --force.
CLOSE_AT = (platform.DEMO_START.replace(day=28) + timedelta(days=4)).replace(day=1, hour=1)
INVOICE_ACCOUNT = "acme"  # the account whose web front end earns the SLA credit
# What the demo suggests after it ends: each works in a new shell after `source .billing/demo.env`
# (tests/e2e/test_demo_next_steps.py runs every one).
NEXT_STEPS = (
    "billing status acme",
    "billing ledger initech",
    "billing verify",
    f"billing explain globex --month {DEMO_MONTH}",
    f"billing invoice {INVOICE_ACCOUNT} --month {DEMO_MONTH}",
)
UI_COMMAND = "dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000"


def close_demo_month() -> int:
    """Close the demo's month (SLA credits, then invoices) and write one invoice as HTML and PDF."""
    section(f"Month-end: billing close-month {DEMO_MONTH} --force --now {CLOSE_AT:%Y-%m-%dT%H:%MZ}")
    with open(state_dir() / "demo-cycle.log", "a") as log, redirect_stderr(log):  # Dagster's own log lines
        code = billing_cli(["close-month", DEMO_MONTH, "--force", "--now", CLOSE_AT.isoformat()])
    if code:
        return code
    html, pdf = state_dir() / "invoice.html", state_dir() / "invoice.pdf"
    section(f"billing invoice {INVOICE_ACCOUNT} --month {DEMO_MONTH} --html {html.name} --pdf {pdf.name}")
    return billing_cli(["invoice", INVOICE_ACCOUNT, "--month", DEMO_MONTH, "--html", str(html), "--pdf", str(pdf)])


def main() -> int:
    url = demo_database_url()  # only the demo may fall back to a local or embedded database
    # The ledger's HMAC key, kept in ./.billing/ledger.key; the demo's processes (and, through
    # demo.env, the shells after it) read it from that file. A key of your own in BILLING_LEDGER_KEY wins.
    key_file = ensure_demo_ledger_key(state_dir())
    if not os.environ.get("BILLING_LEDGER_KEY"):
        os.environ.setdefault("BILLING_LEDGER_KEY_FILE", str(key_file))
    os.environ["BILLING_DATABASE_URL"] = url  # the Dagster resources read it from the environment
    section("Database")
    print(f"  billing database: {redact_url(url)}")
    print(f"  migrated to revision {upgrade(url)}")
    home = prepare_dagster_home(url)
    os.environ["DAGSTER_HOME"] = str(home)  # the instance the demo's runs (and its UI command) use
    print(f"  Dagster instance (runs and events in PostgreSQL): DAGSTER_HOME={home}")

    with ExitStack() as services:
        section("Local services (127.0.0.1 only, stopped at the end)")
        tsdb = ensure_tsdb(platform.DEMO_CLUSTER, state_dir() / "demo-tsdb")
        prometheus = services.enter_context(PrometheusServer(tsdb))
        os.environ["PROMETHEUS_URL"] = prometheus.url
        kube = services.enter_context(KubeEmulator())
        os.environ["KUBECONFIG"] = str(kube.write_kubeconfig(state_dir() / "demo-kubeconfig"))
        payments = services.enter_context(local_payment_services())
        print(f"  Prometheus {prometheus.url} (demo cluster backfilled with promtool, pid {prometheus.pid})")
        print(f"  Kubernetes API emulator {kube.url}")
        print(
            f"  Stripe emulator {payments.stripe.url}, SMTP {payments.smtp.host}:{payments.smtp.port}, "
            f"webhooks {payments.webhooks.url}"
        )

        with connect(url) as conn:
            section("Demo platform")
            platform.load_platform(conn)
            for table_name in ("accounts", "deployments", "domains", "pricing_configs", "machine_usages"):
                count = conn.execute(f"SELECT count(*) FROM billing.{table_name}").fetchone()[0]  # fixed names
                print(f"  billing.{table_name:<16} {count} rows")
            section("Opening credit (ledger)")
            post_opening_credit(conn)
        print("\n".join(prepare_demo_accounts(url, payments)))

        section(f"Hourly cycle through Dagster: {platform.DEMO_START:%Y-%m-%d %H:%M} to {platform.DEMO_END:%H:%M} UTC")
        cycle_log = state_dir() / "demo-cycle.log"
        print(f"  (dbt and Dagster output of the runs goes to {cycle_log})", flush=True)
        with open(cycle_log, "w") as log, redirect_stdout(log), redirect_stderr(log):
            result = run_billing_window(platform.DEMO_START, platform.DEMO_END, now=platform.DEMO_END, database_url=url)
        for run in result.runs:
            print(
                f"  hourly_billing_job run {run.run_id[:8]} ({run.launched_by}): {run.status.lower()} in "
                f"{run.seconds:.1f} s"
            )
        for problem in result.problems:
            print(f"  problem: {problem}")
        posted = result.summary["posted"]
        print(
            f"  posted {posted['entries']} ledger entries, net {credits(posted['net_amount'])} credits; "
            f"runs are in the Dagster UI under hourly_billing_job"
        )

        with connect(url) as conn:
            show_bill(conn)
        print(
            "  Emails received by the SMTP sink: "
            + (", ".join(f"{m['To']} «{m['Subject']}»" for m in payments.smtp.messages) or "none new")
        )
        print(f"  Webhooks received: {len(payments.webhooks.requests)} (HMAC-SHA256 signed)")

        section("Grace period to expiry, against the Kubernetes API emulator")
        with connect(url) as conn:
            shown_before = conn.execute("SELECT 1 FROM billing.accounts WHERE id = %s", (LIFECYCLE_ACCOUNT,)).fetchone()
        if shown_before:
            # The scenario drives the balance and the clock itself: shown once, then left as it ended.
            print(f"  {LIFECYCLE_ACCOUNT} went through grace to expiry in an earlier demo run; where it stands:")
            billing_cli(["status", LIFECYCLE_ACCOUNT, "--now", platform.DEMO_END.isoformat()])
        else:
            print("\n".join(run_lifecycle_demo(url, start=platform.DEMO_END, emulator=kube)))

        section("billing explain globex --month 2026-11")
        billing_cli(["explain", "globex", "--month", "2026-11"])

        section("billing status initech")
        billing_cli(["status", "initech", "--now", platform.DEMO_END.isoformat()])

        section("billing status hooli (its promotional credits expired at 13:00)")
        billing_cli(["status", "hooli", "--now", platform.DEMO_END.isoformat()])
        section("billing explain hooli --month 2026-11 (its usage drawn from promotional, then paid credits)")
        billing_cli(["explain", "hooli", "--month", "2026-11"])
        closed = close_demo_month()

        with connect(url) as conn:
            report = verify_ledger(conn)
        section("billing verify")
        print(
            f"  {'OK' if report.ok else 'FAILED'}: {report.entries} entries in {report.accounts} accounts; "
            "balances, cache and hash chain " + ("agree." if report.ok else f"disagree: {report.problems}")
        )
    env_file = write_demo_env(
        state_dir() / "demo.env",
        {
            "BILLING_DATABASE_URL": url,
            "DAGSTER_HOME": str(home),
            # The UI's partitions start at the demo's first hour (scripts/ui sets the same).
            "BILLING_FIRST_HOUR": os.environ.get("BILLING_FIRST_HOUR") or platform.DEMO_FIRST_HOUR.isoformat(),
            **{k: os.environ[k] for k in ("BILLING_LEDGER_KEY_FILE",) if os.environ.get(k)},
        },
        Path(sys.prefix) / "bin",
    )
    print(f"\nDone. The environment is in {display_path(env_file)}. Next steps, in any shell:")
    print(f"  source {display_path(env_file)}")
    for command in NEXT_STEPS:
        print(f"  {command}")
    print("SQL on the analytics schema, and the Dagster UI (runs, lineage, schedules; until Ctrl-C):")
    print(f"  {UI_COMMAND}")
    if closed:
        return closed
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
