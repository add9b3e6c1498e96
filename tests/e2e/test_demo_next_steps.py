"""After the demo, everything works as printed (issue 23): in a new shell that sources
``.billing/demo.env`` and inherits nothing else, every command the demo suggests exits 0."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NEXT_STEPS = "Next steps, in any shell:"


def printed_steps(out: str) -> list[str]:
    """The commands printed under "Next steps", in order (indented lines until the first that is not)."""
    lines = out[out.index(NEXT_STEPS) + len(NEXT_STEPS) :].splitlines()[1:]
    steps = []
    for line in lines:
        if not line.startswith("  "):
            break
        steps.append(line.strip())
    return steps


def fresh_shell(command: str) -> subprocess.CompletedProcess:
    """``command`` in ``bash -c`` with a newcomer's bare environment: no BILLING_*, no DAGSTER_HOME,
    no virtualenv on PATH (so ``billing`` must come from demo.env)."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8"}
    return subprocess.run(["bash", "-c", command], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_every_printed_next_step_exits_0_in_a_fresh_shell(demo_runs):
    state, out = demo_runs.state, demo_runs.outputs[0]
    env_file = state / "demo.env"
    steps = printed_steps(out)
    # One source line, first, then the commands (the same in both runs).
    assert steps[0] == f"source {env_file}" and len(re.findall(r"^\s*source ", out, re.MULTILINE)) == 1
    assert steps[1:] == [
        "billing status acme",
        "billing ledger initech",
        "billing verify",
        "billing explain globex --month 2026-11",
        "billing invoice acme --month 2026-11",
    ]
    assert printed_steps(demo_runs.outputs[1]) == steps

    # demo.env: what the next steps need, readable by its owner only; no stopped service's URL.
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    exports = dict(re.findall(r"^export (\w+)=(.*)$", env_file.read_text(), re.MULTILINE))
    assert {"BILLING_DATABASE_URL", "DAGSTER_HOME", "BILLING_LEDGER_KEY_FILE", "PATH"} <= set(exports)
    # Nothing else but the demo's first hour, if it sets one; never a stopped service's address or a key.
    assert set(exports) - {"BILLING_DATABASE_URL", "DAGSTER_HOME", "BILLING_LEDGER_KEY_FILE", "PATH"} <= {
        "BILLING_FIRST_HOUR"
    }
    assert (state / "ledger.key").read_text().strip() not in env_file.read_text()
    assert exports["BILLING_LEDGER_KEY_FILE"] == str(state / "ledger.key")
    assert exports["PATH"] == f'{REPO}/.venv/bin:"$PATH"'
    # Without it, the shell has no `billing` at all (the first stumble).
    assert fresh_shell("command -v billing").returncode == 1

    results = {step: fresh_shell(f"{steps[0]} && {step}") for step in steps[1:]}
    for step, result in results.items():
        assert result.returncode == 0, f"{step}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
        assert "Traceback" not in result.stderr
    # ... and they show the demo's state, read with the demo's key.
    verified = results["billing verify"].stdout
    assert verified.startswith("Ledger verified: ") and "hash chain" in verified and " agree" in verified
    invoice = results["billing invoice acme --month 2026-11"].stdout
    # (The sign is the invoice's display convention; the amount is the ledger's +0.295625 credit.)
    assert re.search(r"SLA credit, deployment dep-acme-web \(availability 91\.667%\): [+\-\u2212]0\.295625", invoice)
    assert "acme" in results["billing status acme"].stdout


def test_the_demo_closes_its_month_and_writes_the_invoice(demo_runs):
    first, second = demo_runs.outputs
    # acme's web front end was down 30 of its 360 probed minutes: 91.667% < 95%, 50% of its consumption.
    assert "1 SLA credit(s) posted (0.295625 credits)" in first
    # The demo ran six hours of November: the rest is not settled, so it closes with --force.
    assert re.search(r"Closed by --force with [1-9][0-9]* hour\(s\) of the month not settled\.", first)
    assert "Nothing new: the month was already closed." in second
    html, pdf = demo_runs.state / "invoice.html", demo_runs.state / "invoice.pdf"
    assert "SLA credit" in html.read_text() and pdf.read_bytes()[:5] == b"%PDF-"
    # probe_hour_complete passes on the demo hours: the cycle's checks are all green.
    log = (demo_runs.state / "demo-cycle.log").read_text()
    assert "Asset check 'probe_hour_complete' on 'ingestion/probe_hours' passed." in log
    assert "did not pass" not in log
