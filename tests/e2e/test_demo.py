"""The demo command runs end to end with no server and no BILLING_DATABASE_URL: on embedded PostgreSQL."""

from __future__ import annotations

import re


def test_demo_runs_on_embedded_postgres_when_no_server_answers(demo_runs):
    # The session's demo_runs (tests/e2e/conftest.py): the demo run twice, on embedded PostgreSQL.
    embedded_state = demo_runs.state
    outputs = []
    for run, out in enumerate(demo_runs.outputs, start=1):  # the second run posts nothing twice
        assert f"?host={embedded_state}" in out  # the embedded server's socket folder
        assert ("already posted" in out) == (run == 2)
        # The six hours are one ranged run of the whole cycle, recorded on the demo's instance.
        assert re.search(r"hourly_billing_job run [0-9a-f]{8} \(in_process\): success in", out)
        assert ("posted 0 ledger entries" in out) == (run == 2)
        # Both streams, side by side: globex's rental is charged, its consumption on it covered.
        assert re.search(r"globex\s+machine_rental\s+machine\s+\+5\.666667\s+machine_hour\s+\+14\.166667", out)
        assert re.search(r"globex\s+workload_consumption\s+gpu\s+\+5\.666667\s+gpu_hour\s+\+0\.000000\s+yes", out)
        assert re.search(r"acme\s+workload_consumption\s+cpu\s+.*core_hour\s+\+0\.445000\s+partly", out)
        assert re.search(r"initech\s+node-std-2\s+exception", out)
        assert "OK: " in out and "balances, cache and hash chain agree" in out
        # `billing explain`: rented and consumed side by side, and how they reconcile.
        assert re.search(r"machines rented\s+gpu-a100\s+5\.6667 machine-hours\s+\+14\.166667", out)
        assert re.search(r"workloads consumed\s+GPU\s+5\.6667 GPU-hours\s+5\.6667 GPU-hours\s+\+0\.000000", out)
        assert "Your rentals covered consumption worth +8.426667 credits on node-gpu-1" in out
        assert "deducted from the ledger: +14.166667; not yet deducted: +0.000000" in out
        outputs.append(out)
    # Re-running posted nothing: the same ledger totals both times.
    # (demo-lifecycle's scenario posts its own entries after this table, in the first run only,
    # and the month close its SLA credit.)
    ledger = [
        [
            " ".join(line.split())
            for line in o[o.index("== Ledger entries") : o.index("== Notifications")].splitlines()
            if "demo-lifecycle" not in line and "account" not in line and "sla_credit" not in line
        ]
        for o in outputs
    ]
    assert ledger[0] == ledger[1]
