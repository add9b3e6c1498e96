"""`billing db upgrade`: create or migrate the billing schema (safe to run any number of times)."""

from __future__ import annotations

from billing_pipeline.cli.output import emit


def register(subparsers, json_parent) -> None:
    db = subparsers.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    up = db_sub.add_parser("upgrade", parents=[json_parent], help="apply the migrations up to the newest")
    up.add_argument(
        "--create",
        action="store_true",
        help="create the database if the server does not have it (otherwise a missing one is an error)",
    )
    up.set_defaults(handler=_upgrade)


def _upgrade(args) -> int:
    from billing_pipeline.db.connection import database_url, redact_url
    from billing_pipeline.db.migrate import upgrade  # Alembic and SQLAlchemy: only for this command

    url = database_url()
    revision = upgrade(url, create=args.create)
    emit(
        args,
        {"database": redact_url(url), "revision": revision},
        lambda d: f"Database {d['database']} is at migration {d['revision']} (newest).",
    )
    return 0
