"""The small run's floor: what a fresh process must do for one hour before any of the run's own
work (issue 24's small run, measured by ``bench/cycle_bench.py --small-run``).

Usage: .venv/bin/python bench/small_run_floor.py --hour ISO   (BILLING_DATABASE_URL set)

A fresh ``billing run`` of one hour imports the libraries the pipeline is built on (Dagster,
dagster-postgres, dagster-dbt, dbt) and runs the hour's two dbt builds in its own process (the
usage models, then the ledger models: ``transform/in_process.py``). This script does exactly
that and nothing else: no code location, no Dagster run, no event log, no ingestion, settlement,
lifecycle or alerts. It builds the same nodes with the same flags, the same Jinja cache and the
same parse state as the run, for an hour the run has built already (incremental models replace
their window: the same SQL again). What a whole run takes beyond this is what the pipeline adds
to the libraries' own cost.

Prints one JSON line: the seconds of each part and the number of nodes of each build.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path


def main() -> int:
    began = time.monotonic()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hour", required=True, help="the UTC hour to build, ISO 8601")
    hour = datetime.fromisoformat(parser.parse_args().hour)

    import dagster  # noqa: F401  the libraries a run imports, whatever it then does
    import dagster_dbt  # noqa: F401
    import dagster_postgres  # noqa: F401
    from dbt.cli.main import dbtRunner

    from billing_pipeline.transform import jinja_cache
    from billing_pipeline.transform.in_process import JINJA_CACHE_DIR, OUTPUT_FLAGS, _paths, parsed_manifest
    from billing_pipeline.transform.project import BUILD_ARGS, dbt_env, window_env
    from billing_pipeline.transform.translator import AFTER_INVOICES, AFTER_LEDGER

    imported = time.monotonic()
    os.environ.update(dbt_env(os.environ["BILLING_DATABASE_URL"]))
    os.environ.update(window_env(hour, hour + timedelta(hours=1)))
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder)
        jinja_cache.install(JINJA_CACHE_DIR)
        manifest = parsed_manifest(target)
        loaded = time.monotonic()
        flags = [*BUILD_ARGS, *_paths(target), *OUTPUT_FLAGS]  # as the run's own calls
        usage = dbtRunner(manifest=manifest).invoke([*flags, "--exclude", *AFTER_LEDGER.split(), AFTER_INVOICES])
        usage_done = time.monotonic()
        ledger = dbtRunner(manifest=manifest).invoke(
            [*flags, "--select", *AFTER_LEDGER.split(), "--exclude", AFTER_INVOICES]
        )
        ledger_done = time.monotonic()
    print(
        json.dumps(
            {
                "ok": bool(usage.success and ledger.success),
                "imports_seconds": round(imported - began, 2),
                "manifest_seconds": round(loaded - imported, 2),
                "usage_build_seconds": round(usage_done - loaded, 2),
                "usage_nodes": len(usage.result or []),
                "ledger_build_seconds": round(ledger_done - usage_done, 2),
                "ledger_nodes": len(ledger.result or []),
                "seconds_in_process": round(ledger_done - began, 2),
            }
        ),
        flush=True,
    )
    sys.stderr.flush()
    os._exit(0)  # as the `billing` executable leaves (cli/main.py::console_entry): no teardown


if __name__ == "__main__":  # dbt's multiprocessing context re-imports the main module
    main()
