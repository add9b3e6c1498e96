"""Building the dbt documentation site (``billing docs``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from billing_pipeline.core.errors import BillingError
from billing_pipeline.db.connection import redact_url
from billing_pipeline.transform.project import DBT_PROJECT_DIR, dbt_env, dbt_executable

SITE_FILES = ("index.html", "static_index.html", "manifest.json", "catalog.json")


def build_docs(database_url: str, output_dir: Path) -> Path:
    """Run ``dbt docs generate --static`` against the database; copy the site to ``output_dir``.

    Returns the path of the single-file site (``static_index.html``: open it in a browser, no
    server needed); ``index.html`` + the JSON files can be served by ``dbt docs serve`` or any
    static web server.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="billing-dbt-docs-") as work:
        env = {
            **os.environ,
            **dbt_env(database_url),
            "DBT_PROFILES_DIR": str(DBT_PROJECT_DIR),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        }
        cmd = [
            dbt_executable(),
            "docs",
            "generate",
            "--static",
            "--project-dir",
            str(DBT_PROJECT_DIR),
            "--target-path",
            str(Path(work) / "target"),
            "--log-path",
            str(Path(work) / "logs"),
        ]
        proc = subprocess.run(cmd, env=env, cwd=DBT_PROJECT_DIR, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-12:])
            raise BillingError(
                f"dbt docs generate failed against {redact_url(database_url)}:\n{tail}\n"
                "Check that the database is reachable and migrated (`billing db upgrade`)."
            )
        for name in SITE_FILES:
            source = Path(work) / "target" / name
            if source.exists():
                shutil.copy2(source, output_dir / name)
    return output_dir / "static_index.html"
