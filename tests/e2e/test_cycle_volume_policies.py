"""A day of the whole cycle through `billing run` (the console script), with every volume policy.

A synthetic cluster served by a real Prometheus, the platform rows in PostgreSQL, the Kubernetes
emulator, localstripe, an SMTP sink and a webhook receiver. Five accounts, each running one pod
of 0.5 cores (request 1 core) and 1 GiB for the whole day, priced 0.04 per core-hour on
max(request, usage) and 0.005 per GiB-hour: 0.045000 credits an hour, 0.540000 per 12 hours.

- ``pol-delete``, ``pol-retain``, ``pol-snapshot``: one account under each volume policy, 0.30
  credits, 6 hours of grace; each deployment has a PVC on the emulator.
- ``topup``: auto top-up of 50 when at or below 10 (card 4242 on localstripe), 10.30 credits.
- ``alert``: low-balance threshold 10, email and webhook, 10.40 credits.

The day [S, S+24h) is billed as the hourly schedule would catch it up, in two `billing run`s
of 12 hours, each at its own clock (``--now``), never the calendar:

1. [S, S+12h) at S+12h: every account has paid 0.54 (dbt-built marts, settled to the ledger);
   the three policy accounts are at -0.24 and enter grace (deadline S+18h, routing suspended);
   ``topup`` falls to 9.76 and is charged 50.00 through a Stripe PaymentIntent in the same run;
   ``alert`` falls to 9.86 and its low-balance notice is queued and delivered (email + signed
   webhook).
2. [S+12h, S+24h) at S+24h: the deadline has passed with the balances still negative: the
   three expire and their deployments are cleaned up; the PVC is deleted under ``delete``, kept
   7 days under ``retain``, captured as a VolumeSnapshot and then deleted under ``snapshot``.
"""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import psycopg
import pytest

from billing_pipeline.db.connection import connect
from billing_pipeline.db.dagster_instance import prepare_dagster_home
from billing_pipeline.lifecycle.snapshots import snapshot_name
from billing_pipeline.resources.notify import verify_webhook_signature
from devkit.demo.payments import local_payment_services
from devkit.emulators.kube_emulator import KubeEmulator
from devkit.emulators.stripe_emulator import create_customer_with_card, payment_intents
from devkit.synthetic import (
    GIB,
    Account,
    Cluster,
    Container,
    Deployment,
    Pod,
    PrometheusServer,
    build_tsdb,
    write_platform_rows,
)
from tests.support import dbt as d
from tests.support.cycle import START, H, billing, environment, ledger_differs_from_charges
from tests.support.kube import seed_deployment
from tests.support.payments import set_balance

D = Decimal
POLICIES = ("delete", "retain", "snapshot")
PER_HOUR = D("0.045000")  # 0.5 of 1 requested core at 0.04 + 1 GiB at 0.005
WEBHOOK_SECRET = "demo-webhook-secret-not-for-production"  # local_payment_services exports it


def _account(account_id: str, **extra) -> Account:
    return Account(account_id, account_id.title(), email=f"{account_id}@example.test", extra=extra)


def day_cluster(webhook_url: str, stripe: tuple[str, str]) -> Cluster:
    accounts = [
        *(
            _account(
                f"pol-{p}", volume_policy=p, grace_period_hours=6, volume_retention_days=7, low_balance_threshold=0
            )
            for p in POLICIES
        ),
        _account(
            "topup",
            low_balance_threshold=0,
            auto_topup_enabled=True,
            auto_topup_threshold=D("10"),
            auto_topup_amount=D("50"),
            auto_topup_monthly_limit=D("200"),
            stripe_customer_id=stripe[0],
            stripe_payment_method_id=stripe[1],
        ),
        _account("alert", low_balance_threshold=D("10"), notify_email="ops@alert.test", notify_webhook_url=webhook_url),
    ]
    container = Container("app", cpu_cores=0.5, cpu_request=1.0, memory_bytes=GIB, memory_request=GIB)
    return Cluster(
        start=START,
        minutes=24 * 60,
        pod_cgroup_series=False,
        accounts=tuple(accounts),
        deployments=tuple(Deployment(f"dep-{a.id}", a.id, f"ns-{a.id}", "web") for a in accounts),
        pods=tuple(Pod(f"{a.id}-pod", f"dep-{a.id}", "shared-1", (container,)) for a in accounts),
    )


def load_platform(db_url: str, cluster: Cluster) -> None:
    """The cluster's platform rows, the prices, and each account's opening credit."""
    with connect(db_url) as conn:
        write_platform_rows(conn, cluster)
    d.add_price(db_url, "cpu", "cpu", "core_hour", "0.04", basis="max_request_usage")
    d.add_price(db_url, "mem", "memory", "gib_hour", "0.005", basis="usage")
    for account, amount in {**{f"pol-{p}": "0.30" for p in POLICIES}, "topup": "10.30", "alert": "10.40"}.items():
        set_balance(db_url, account, D(amount), f"opening-{account}")


def rows(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()


def ledger(url: str) -> dict[tuple[str, str], tuple[int, Decimal]]:
    return {
        (a, t): (n, s)
        for a, t, n, s in rows(
            url, "SELECT account_id, type, count(*), sum(amount) FROM billing.credit_transactions GROUP BY 1, 2"
        )
    }


def assert_half_day(db_url: str, kube: KubeEmulator) -> None:
    """After [S, S+12h) at S+12h: balances, states, and the policy accounts suspended, not deleted."""
    assert ledger_differs_from_charges(db_url) == []
    assert dict(rows(db_url, "SELECT account_id, balance FROM billing.credits")) == {
        **{f"pol-{p}": D("-0.240000") for p in POLICIES},
        "topup": D("59.760000"),
        "alert": D("9.860000"),
    }
    assert dict(rows(db_url, "SELECT account_id, state FROM billing.account_lifecycle")) == {
        **{f"pol-{p}": "grace_period" for p in POLICIES},
        "topup": "healthy",
        "alert": "low_balance",
    }
    deadlines = rows(
        db_url, "SELECT DISTINCT grace_deadline FROM billing.account_lifecycle WHERE grace_deadline IS NOT NULL"
    )
    assert deadlines == [(START + 18 * H,)]
    for p in POLICIES:
        ns = f"ns-pol-{p}"
        assert kube.get("PersistentVolumeClaim", ns, "data-0") is not None
        assert kube.get("Deployment", ns, "web") is not None
        paths = kube.get("Ingress", ns, "web")["spec"]["rules"][0]["http"]["paths"]
        assert all(path["backend"]["service"]["name"].startswith("satusky-suspended-") for path in paths), p


def assert_topped_up_once(db_url: str, services) -> None:
    """One PaymentIntent of 50.00 on the saved card, keyed by the attempt, credited once."""
    [intent] = payment_intents(services.stripe.url, services.stripe.api_key)
    assert (intent["status"], intent["amount"]) == ("succeeded", 5000)
    assert intent["metadata"] == {"satusky_attempt_key": "auto_topup:topup:1", "satusky_account_id": "topup"}
    assert rows(
        db_url,
        "SELECT account_id, idempotency_key, amount FROM billing.credit_transactions WHERE type = 'auto_topup'",
    ) == [("topup", "auto_topup:topup:1", D("50.000000"))]


def assert_low_balance_alert_delivered(db_url: str, services) -> None:
    """The crossing queued once, delivered by email and by a signed webhook."""
    assert rows(
        db_url,
        "SELECT account_id, kind FROM billing.notification_outbox WHERE account_id IN ('alert', 'topup') ORDER BY id",
    ) == [("topup", "auto_topup_succeeded"), ("alert", "low_balance")]
    [mail] = [m for m in services.smtp.messages if m["To"] == "ops@alert.test"]
    assert "low balance" in mail["Subject"] and "9.860000 credits" in mail.get_content()
    [hook] = services.webhooks.requests
    assert verify_webhook_signature(
        WEBHOOK_SECRET, hook.headers["X-Satusky-Timestamp"], hook.body, hook.headers["X-Satusky-Signature"]
    )
    document = json.loads(hook.body)
    assert (document["kind"], document["payload"]["balance"]) == ("low_balance", "9.860000")
    assert rows(
        db_url,
        "SELECT d.channel, d.status FROM billing.notification_deliveries d "
        "JOIN billing.notification_outbox o ON o.id = d.notification_id WHERE o.account_id = 'alert' ORDER BY 1",
    ) == [("email", "delivered"), ("webhook", "delivered")]


def assert_day_billed(db_url: str, cluster: Cluster) -> None:
    """One usage deduction per account and hour, 0.045 each, equal to the dbt-built charges."""
    assert ledger_differs_from_charges(db_url) == []
    book = ledger(db_url)
    for account in cluster.accounts:
        assert book[(account.id, "usage_deduction")] == (24, -24 * PER_HOUR), account.id
    assert {a for a, t in book if t == "auto_topup"} == {"topup"}
    assert dict(rows(db_url, "SELECT account_id, state FROM billing.account_lifecycle")) == {
        **{f"pol-{p}": "expired" for p in POLICIES},
        "topup": "healthy",
        "alert": "low_balance",
    }


def assert_volumes_as_each_policy_says(db_url: str, kube: KubeEmulator) -> None:
    """Each expired deployment's workload is gone; its PVC deleted, retained or snapshotted."""
    for p in POLICIES:
        for kind in ("Deployment", "Service", "Ingress"):
            assert kube.get(kind, f"ns-pol-{p}", "web") is None, (p, kind)
    assert kube.get("PersistentVolumeClaim", "ns-pol-delete", "data-0") is None
    assert kube.get("PersistentVolumeClaim", "ns-pol-retain", "data-0") is not None
    assert kube.get("PersistentVolumeClaim", "ns-pol-snapshot", "data-0") is None
    snapshot = kube.get("VolumeSnapshot", "ns-pol-snapshot", snapshot_name("dep-pol-snapshot", "data-0"))
    assert snapshot is not None, "no VolumeSnapshot taken under the snapshot policy"
    assert snapshot["spec"]["source"] == {"persistentVolumeClaimName": "data-0"}
    assert snapshot["status"]["readyToUse"] is True
    assert [k for k in kube.objects() if k[0] == "VolumeSnapshot"] == [
        ("VolumeSnapshot", "ns-pol-snapshot", snapshot_name("dep-pol-snapshot", "data-0"))
    ]
    for account in ("topup", "alert"):  # the healthy accounts are untouched
        assert kube.get("Deployment", f"ns-{account}", "web") is not None
        assert kube.get("PersistentVolumeClaim", f"ns-{account}", "data-0") is not None
    end = START + 24 * H
    assert rows(
        db_url,
        "SELECT account_id, volume_policy, volumes_delete_after, volumes_done_at IS NOT NULL "
        "FROM billing.lifecycle_cleanups ORDER BY account_id",
    ) == [
        ("pol-delete", "delete", end, True),
        ("pol-retain", "retain", end + timedelta(days=7), False),
        ("pol-snapshot", "snapshot", end, True),
    ]


@pytest.mark.prometheus
@pytest.mark.slow
def test_a_day_with_every_volume_policy_bills_tops_up_alerts_and_expires_through_billing_run(db_url, tmp_path):
    with local_payment_services() as services, KubeEmulator() as kube:
        customer = create_customer_with_card(services.stripe.url, "topup@example.test", api_key=services.stripe.api_key)
        cluster = day_cluster(services.webhooks.url, customer)
        load_platform(db_url, cluster)
        for account in cluster.accounts:
            seed_deployment(kube, f"ns-{account.id}", "web", f"dep-{account.id}", account.id, pvcs={"data-0": "10Gi"})
        with PrometheusServer(build_tsdb(cluster, tmp_path / "tsdb")) as prometheus:
            env = {
                **environment(db_url, prometheus.url, prepare_dagster_home(db_url, tmp_path / "dagster_home")),
                "KUBECONFIG": str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
            }
            # 1. The first half of the day, at its end: grace, a top-up and an alert.
            code, first, err = billing(["run", *window(0, 12)], env)
            assert code == 0, (err[-3000:], first.get("problems"))
            assert_half_day(db_url, kube)
            assert_topped_up_once(db_url, services)
            assert_low_balance_alert_delivered(db_url, services)

            # 2. The second half, at the end of the day: the deadline (S+18h) has passed.
            code, second, err = billing(["run", *window(12, 24)], env)
            assert code == 0, (err[-3000:], second.get("problems"))
        assert_day_billed(db_url, cluster)
        assert_topped_up_once(db_url, services)  # not charged again
        assert_volumes_as_each_policy_says(db_url, kube)


def window(first: int, last: int) -> list[str]:
    """``billing run`` arguments for hours [S+first, S+last), at the clock S+last."""
    return [
        "--start",
        (START + first * H).isoformat(),
        "--end",
        (START + last * H).isoformat(),
        "--now",
        (START + last * H).isoformat(),
    ]
