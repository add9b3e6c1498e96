"""Probe ingestion (docs/rules/ingestion.md) from a real Prometheus, backfilled with probe_success series."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import dagster as dg
import psycopg
import pytest

from billing_pipeline.core.clock import CLOCK_TAG
from billing_pipeline.ingestion.probes import probe_availability_hours
from billing_pipeline.resources.postgres import PostgresResource
from billing_pipeline.resources.prometheus import PrometheusResource
from devkit.synthetic import PrometheusServer, create_blocks

T0 = datetime(2026, 10, 1, tzinfo=UTC)

pytestmark = pytest.mark.prometheus


def _series(lines: list[str], labels: str, points) -> None:
    for seconds, value in points:
        lines.append(f"probe_success{{{labels}}} {value} {int(T0.timestamp()) + seconds}")


def probe_openmetrics() -> str:
    """Hour 0 only. dep-a: two probers every 15 s; both down in minutes 10-12; in minute 20 one
    sample of four is down (the minute is up); in minute 40 prober y is down, x up (up).
    dep-b: one sample a minute, none in minutes 30-34 (a gap). dep-unknown: no deployments row."""
    lines = ["# TYPE probe_success gauge"]
    _series(
        lines,
        'deployment_id="dep-a",instance="x"',
        [(s, 0 if 600 <= s < 780 or s == 1215 else 1) for s in range(0, 3600, 15)],
    )
    _series(
        lines,
        'deployment_id="dep-a",instance="y"',
        [(s, 0 if 600 <= s < 780 or 2400 <= s < 2460 else 1) for s in range(5, 3600, 15)],
    )
    _series(lines, 'deployment_id="dep-b",instance="x"', [(s, 1) for s in range(0, 3600, 60) if not 1800 <= s < 2100])
    _series(lines, 'deployment_id="dep-unknown",instance="x"', [(s, 1) for s in range(30, 3600, 60)])
    return "\n".join(lines) + "\n# EOF\n"


@pytest.fixture(scope="module")
def probe_prometheus(tmp_path_factory):
    base = tmp_path_factory.mktemp("probes")
    text = base / "probes.om.txt"
    text.write_text(probe_openmetrics())
    server = PrometheusServer(create_blocks(text, base / "tsdb")).start()
    try:
        yield server
    finally:
        server.stop()


def test_probe_hours_count_measured_down_and_unmeasured_minutes(db_url, probe_prometheus):
    with psycopg.connect(db_url) as conn:
        conn.execute("INSERT INTO billing.accounts (id, name) VALUES ('acme', 'Acme')")
        conn.execute(
            "INSERT INTO billing.deployments (id, account_id, namespace, name, created_at) VALUES "
            "('dep-a', 'acme', 'acme', 'a', '2026-01-01'), ('dep-b', 'acme', 'acme', 'b', '2026-01-01'), "
            "('dep-silent', 'acme', 'acme', 's', '2026-01-01')"
        )
    resources = {
        "prometheus": PrometheusResource(url=probe_prometheus.url),
        "postgres": PostgresResource(database_url=db_url),
    }
    for hour in (T0, T0 + timedelta(hours=1)):
        for _ in range(2):  # re-running an hour replaces it
            result = dg.materialize(
                [probe_availability_hours],
                partition_key=f"{hour:%Y-%m-%d-%H:%M}",
                resources=resources,
                tags={CLOCK_TAG: "2026-10-02T00:00:00+00:00"},
            )
            assert result.success

    with psycopg.connect(db_url) as conn:
        rows = {
            r[0]: r[1:]
            for r in conn.execute(
                "SELECT deployment_id, measured_minutes, down_minutes, minute_states FROM billing.probe_deployment_hours "
                "WHERE hour = %s",
                (T0,),
            ).fetchall()
        }
        hours = conn.execute("SELECT hour, complete, problems FROM billing.probe_hours ORDER BY hour").fetchall()
    assert rows["dep-a"][:2] == (60, 3) and rows["dep-a"][2][10:13] == "ddd" and rows["dep-a"][2][20] == "u"
    assert rows["dep-a"][2][40] == "u"
    assert rows["dep-b"][:2] == (55, 0) and rows["dep-b"][2][30:35] == "....."
    assert rows["dep-unknown"][:2] == (60, 0)  # kept: the SLA job only measures known deployments
    (_h0, complete0, problems0), (_h1, complete1, problems1) = hours
    assert not complete0 and "2 live deployment(s) have minutes without probe samples" in problems0[0]
    assert "dep-b (5 min)" in problems0[0] and "dep-silent (60 min)" in problems0[0]
    assert not complete1 and problems1[0] == "Prometheus holds no probe_success samples for this hour"
    checks = [e for e in result.get_asset_check_evaluations()]
    assert [c.check_name for c in checks] == ["probe_hour_complete"] and not checks[0].passed
