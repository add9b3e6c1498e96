"""Accounts with nothing to do are settled in one statement; every other account is evaluated.

At fleet scale almost every account is healthy and stays so; evaluating each one (a dozen round
trips) cost most of the lifecycle step's time. The one statement must never swallow an account
that has something to do: a transition, or open lifecycle work.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import psycopg
import pytest

from billing_pipeline.lifecycle import engine
from tests.support.kube import run, set_balance
from tests.support.platform import create_accounts

UTC = UTC
T0 = datetime(2025, 5, 1, 10, tzinfo=UTC)
H = timedelta(hours=1)


@pytest.fixture
def evaluated(monkeypatch):
    """The accounts evaluated one by one, run after run."""
    seen: list[str] = []
    original = engine.Lifecycle.evaluate

    def recording(self, account_id, outcome=None):
        seen.append(account_id)
        return original(self, account_id, outcome)

    monkeypatch.setattr(engine.Lifecycle, "evaluate", recording)
    return seen


def _lifecycle(url):
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT account_id, state, last_balance, evaluated_at FROM billing.account_lifecycle")
        return {a: (s, b, e) for a, s, b, e in rows.fetchall()}


def test_quiet_accounts_are_recorded_without_one_by_one_evaluation(db_url, evaluated):
    create_accounts(db_url, "calm", "dropping", "new", threshold=Decimal("10"))
    for account in ("calm", "dropping"):
        set_balance(db_url, account, 100)
    run(db_url, None, T0)  # first evaluation: no persisted state yet, every account one by one
    assert sorted(evaluated) == ["calm", "dropping", "new"]

    evaluated.clear()
    set_balance(db_url, "dropping", 5)  # below the threshold: a transition is due
    set_balance(db_url, "calm", 90)
    report = run(db_url, None, T0 + H)
    # "new" has balance 0: grace period since the first run, so never quiet.
    assert sorted(evaluated) == ["dropping", "new"]
    states = {a.account_id: a.state for a in report.accounts}
    assert states == {"calm": "healthy", "dropping": "low_balance", "new": "grace_period"}
    calm = _lifecycle(db_url)["calm"]
    assert calm == ("healthy", Decimal("90"), T0 + H)  # recorded as the one-by-one step would


def test_open_lifecycle_work_keeps_an_account_evaluated(db_url, evaluated):
    create_accounts(db_url, "acme", threshold=Decimal("10"))
    set_balance(db_url, "acme", 100)
    run(db_url, None, T0)
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO billing.lifecycle_actions (action_key, account_id, action, state, updated_at) "
            "VALUES ('k1', 'acme', 'restore_routing', 'failed', now())"
        )
    evaluated.clear()
    run(db_url, None, T0 + H)
    assert evaluated == ["acme"]


def test_a_dry_run_records_nothing(db_url, evaluated):
    create_accounts(db_url, "calm", threshold=Decimal("10"))
    set_balance(db_url, "calm", 100)
    run(db_url, None, T0)
    evaluated.clear()
    report = run(db_url, None, T0 + H, dry_run=True)
    assert evaluated == [] and [(a.account_id, a.state) for a in report.accounts] == [("calm", "healthy")]
    assert _lifecycle(db_url)["calm"][2] == T0


def test_a_dry_run_treats_an_account_without_state_as_starting_healthy(db_url, evaluated):
    create_accounts(db_url, "fresh", "broke", threshold=Decimal("10"))
    set_balance(db_url, "fresh", 100)
    report = run(db_url, None, T0, dry_run=True)
    # "fresh" would stay healthy: no need to evaluate it; "broke" (balance 0) would enter grace.
    assert evaluated == ["broke"]
    assert {a.account_id: a.state for a in report.accounts} == {"fresh": "healthy", "broke": "grace_period"}
    assert _lifecycle(db_url) == {}


def test_a_quiet_hour_never_connects_to_the_cluster(db_url, evaluated):
    """The Kubernetes client (its imports, the kubeconfig) is built only when an account needs it."""
    create_accounts(db_url, "calm", threshold=Decimal("10"))
    set_balance(db_url, "calm", 100)
    run(db_url, None, T0)
    connects: list[int] = []

    def connect_cluster():
        connects.append(1)
        return None

    evaluated.clear()
    report = run(db_url, None, T0 + H, connect_cluster=connect_cluster)
    assert evaluated == [] and connects == []
    assert [(a.account_id, a.state) for a in report.accounts] == [("calm", "healthy")]


def test_the_cluster_is_connected_once_when_first_needed():
    class Conn:
        autocommit = True

    cluster = object()
    connects: list[int] = []

    def connect_cluster():
        connects.append(1)
        return cluster

    lc = engine.Lifecycle(Conn(), None, T0, connect_cluster=connect_cluster)
    assert connects == []
    assert lc.cluster is cluster and lc.need_cluster() is cluster and lc.cluster is cluster
    assert connects == [1]
    # A cluster given directly is used as is; the factory is then never called.
    assert engine.Lifecycle(Conn(), cluster, T0, connect_cluster=connect_cluster).cluster is cluster
    assert connects == [1]
