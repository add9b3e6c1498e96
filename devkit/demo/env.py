"""``.billing/demo.env``: the environment the demo's next steps need, for any new shell.

After ``scripts/demo``, ``source .billing/demo.env`` gives a shell what the demo's own processes
had: the database, the Dagster instance, the ledger key (as a file, never its value), ``PATH``
with the locked environment's ``billing``, ``dbt`` and ``dagster``, and the first billable hour.
Services the demo stopped at its end (Prometheus, the emulators) are deliberately absent: a
variable pointing at a server that is gone would make the next command fail in a stranger way
than "PROMETHEUS_URL is not set".
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

HEADER = """\
# Written by scripts/demo: the environment of the demo's next steps.
# Use it in any shell: source {path}
# Not set here: PROMETHEUS_URL and the Stripe, SMTP, webhook and Kubernetes emulators' settings:
# the demo stopped those services when it ended. Jobs that need them skip with the reason.
"""


def display_path(path: Path, cwd: Path | None = None) -> str:
    """``path`` relative to ``cwd`` when inside it (what a person types), else absolute."""
    cwd = (cwd or Path.cwd()).resolve()
    try:
        return str(path.resolve().relative_to(cwd))
    except ValueError:
        return str(path.resolve())


def write_demo_env(path: Path, variables: dict[str, str], venv_bin: Path) -> Path:
    """Write ``path`` (mode 0600: the database URL may hold a password) with one ``export`` per
    variable and ``venv_bin`` put first on ``PATH``; values are shell-quoted."""
    lines = [HEADER.format(path=display_path(path))]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in variables.items()]
    lines.append(f'export PATH={shlex.quote(str(venv_bin))}:"$PATH"')
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.chmod(path, 0o600)  # an older file keeps its mode through O_TRUNC
    return path
