"""`billing docs`: build the dbt documentation site (models, columns, lineage) for analysts."""

from __future__ import annotations

from pathlib import Path

from billing_pipeline.cli.output import emit


def register(subparsers, json_parent) -> None:
    docs = subparsers.add_parser("docs", parents=[json_parent], help="build the dbt documentation site (static HTML)")
    docs.add_argument(
        "--output", type=Path, default=None, help="folder for the site (default: $BILLING_STATE_DIR/dbt-docs)"
    )
    docs.set_defaults(handler=_docs)


def _docs(args) -> int:
    from billing_pipeline.db.connection import database_url, redact_url, state_dir
    from billing_pipeline.transform.docs import build_docs  # dbt is only needed here

    url = database_url()
    output = (args.output or state_dir() / "dbt-docs").resolve()
    site = build_docs(url, output)
    emit(
        args,
        {"database": redact_url(url), "output": str(output), "site": str(site)},
        lambda d: (
            f"dbt docs built from {d['database']}: open {d['site']} in a browser "
            f"(or serve {d['output']} with any static web server)."
        ),
    )
    return 0
