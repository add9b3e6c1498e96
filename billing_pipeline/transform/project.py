"""The dbt project (``dbt_project/``), built once and shared by the assets, the CLI and tests."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dagster_dbt import DbtProject
from dagster_dbt.dbt_project import using_dagster_dev
from filelock import FileLock

from billing_pipeline.core.hours import Hour
from billing_pipeline.db.connection import dbt_target, session_options

DBT_PROJECT_DIR = Path(__file__).resolve().parents[2] / "dbt_project"

# dbt's threads: the machines have two cores.
DBT_THREADS = 2
# Every build of the assets (transform/assets.py). dbt unit tests check SQL logic, not data:
# they run in CI (tests/integration/test_dbt_unit_tests.py), not every hour.
BUILD_ARGS = ("build", "--threads", str(DBT_THREADS), "--exclude-resource-type", "unit_test")

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)


def window_env(start, end) -> dict[str, str]:
    """The hours [start, end), spelled as ``Hour.text`` (UTC ISO 8601), as
    macros/partition_window.sql reads them (transform/assets.py: why not ``--vars``)."""
    return {"BILLING_DBT_MIN_HOUR": Hour.of(start).text, "BILLING_DBT_MAX_HOUR": Hour.of(end).text}


def venv_dbt() -> Path:
    """Where the venv's dbt is: next to this interpreter."""
    return Path(sys.executable).with_name("dbt")


def dbt_executable() -> str:
    """The dbt next to this interpreter (the venv's), else whatever is on PATH."""
    beside = venv_dbt()
    if beside.exists():
        return str(beside)
    return shutil.which("dbt") or "dbt"


def sources_newer_than(path: Path) -> bool:
    """True when a model, macro, test or dbt_project.yml changed after ``path`` was written."""
    mtime = path.stat().st_mtime
    for folder in ("models", "macros", "data_tests"):
        for file in (DBT_PROJECT_DIR / folder).rglob("*"):
            if file.suffix in (".sql", ".yml", ".yaml") and file.stat().st_mtime > mtime:
                return True
    return (DBT_PROJECT_DIR / "dbt_project.yml").stat().st_mtime > mtime


def _parse() -> None:
    from dagster_dbt import DbtCliResource

    DbtCliResource(project_dir=dbt_project, dbt_executable=dbt_executable()).cli(
        ["parse", "--quiet"], target_path=dbt_project.target_path
    ).wait()


def ensure_manifest() -> Path:
    """Parse the project when its manifest is missing or older than a model, macro or test
    (and always under ``dagster dev``, like ``DbtProject.prepare_if_dev``).

    Deployed images ship a parsed manifest; on a development machine and in CI the first import
    parses once (a few seconds). A file lock serialises concurrent processes (pytest-xdist
    workers); the venv's dbt is used even when it is not on PATH.
    """
    manifest = dbt_project.manifest_path

    def needed() -> bool:
        return not manifest.exists() or sources_newer_than(manifest)

    if using_dagster_dev() or needed():
        manifest.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(manifest.with_suffix(".parse-lock"))):
            if using_dagster_dev() or needed():
                _parse()
    return manifest


def manifest_for_database(manifest_path: Path, database: str | None = None) -> dict:
    """The parsed manifest, naming ``database`` (default: the one BILLING_DATABASE_URL names).

    The manifest is parsed once with profiles.yml's default database (``satusky_billing``), but
    the data lives in the database BILLING_DATABASE_URL names. dagster-dbt takes the relation
    names from the manifest for the assets' "Storage" metadata (``dagster/table_name``) and for
    the row-count query after each build, so they must name the real database: PostgreSQL refuses
    a query that names another one.
    """
    manifest = json.loads(Path(manifest_path).read_text())
    if database is None:
        url = os.environ.get("BILLING_DATABASE_URL")
        database = str(dbt_target(url)["dbname"]) if url else None
    if not database:
        return manifest
    for section in ("nodes", "sources", "seeds", "snapshots"):
        for node in (manifest.get(section) or {}).values():
            old = node.get("database")
            if not old or old == database:
                continue
            node["database"] = database
            relation = node.get("relation_name")
            if relation and relation.startswith(f'"{old}".'):
                node["relation_name"] = f'"{database}".' + relation[len(f'"{old}".') :]
    return manifest


def dbt_env(database_url: str) -> dict[str, str]:
    """The DBT_PG_* variables profiles.yml reads, for the database at ``database_url``, and the
    libpq options of dbt's sessions, the pipeline's own (``PGOPTIONS``: ``session_options``, JIT
    off among them, see db/connection.py).

    Works for a TCP host and for a Unix-socket folder (embedded pgserver) alike.
    """
    target = dbt_target(database_url)
    return {
        "DBT_PG_HOST": str(target["host"]),
        "DBT_PG_PORT": str(target["port"]),
        "DBT_PG_USER": str(target["user"]),
        "DBT_PG_PASSWORD": str(target["password"]),
        "DBT_PG_DBNAME": str(target["dbname"]),
        "PGOPTIONS": session_options(database_url),
    }


def dbt_environment(database_url: str):
    """Point dbt (a subprocess inheriting os.environ) at ``database_url`` for the duration."""
    return temporary_environment(dbt_env(database_url))


@contextmanager
def temporary_environment(values: dict[str, str]) -> Iterator[None]:
    """Set ``values`` in os.environ (which dbt's subprocess inherits) for the duration."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


# One folder per dbt invocation (dbt writes its artifacts and log there), under target/runs/.
TARGET_DIR = DBT_PROJECT_DIR / dbt_project.target_path  # dbt_project.target_path is relative
RUNS_DIR = TARGET_DIR / "runs"
# dbt's parse state (partial_parse.msgpack) per database: dbt re-parses the whole project when
# the connection it parsed with differs, so each database keeps its own.
PARSE_STATE_DIR = TARGET_DIR / "parse-state"
PARTIAL_PARSE_FILE = "partial_parse.msgpack"
# A failed invocation's folder is kept this long for inspection (its dbt.log), then pruned.
KEEP_FAILED_SECONDS = 24 * 3600


def _parse_state_file(database_url: str) -> Path:
    target = dbt_target(database_url)
    identity = f"{target['host']}:{target['port']}/{target['user']}/{target['dbname']}"
    return PARSE_STATE_DIR / f"{hashlib.sha256(identity.encode()).hexdigest()[:16]}.msgpack"


def prune_invocation_folders(older_than_seconds: float = KEEP_FAILED_SECONDS) -> int:
    """Remove invocation folders older than ``older_than_seconds``; returns how many."""
    if not RUNS_DIR.exists():
        return 0
    cutoff = time.time() - older_than_seconds
    removed = 0
    for folder in RUNS_DIR.iterdir():
        try:
            if folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
        except FileNotFoundError:  # pruned by a concurrent process
            pass
    return removed


@contextmanager
def invocation_target(database_url: str) -> Iterator[Path]:
    """A fresh target folder for one dbt invocation against ``database_url``.

    It starts with the parse state dbt left for this database, so dbt re-parses only what changed
    (seconds saved on every run). Afterwards the parse state is kept and the folder removed; a
    failed invocation's folder stays for a day (its dbt.log), so the target folder stays small.
    """
    RUNS_DIR.mkdir(parents=True, exist_ok=True)
    PARSE_STATE_DIR.mkdir(parents=True, exist_ok=True)
    folder = RUNS_DIR / uuid.uuid4().hex
    folder.mkdir()
    state = _parse_state_file(database_url)
    if state.exists():
        shutil.copyfile(state, folder / PARTIAL_PARSE_FILE)
    yield folder
    # Reached only when the invocation succeeded: keep its parse state, drop the rest.
    produced = folder / PARTIAL_PARSE_FILE
    if produced.exists():
        staged = state.with_name(f"{state.name}.{folder.name}")
        shutil.copyfile(produced, staged)
        os.replace(staged, state)  # atomic: a concurrent invocation reads the old or the new file
    shutil.rmtree(folder, ignore_errors=True)
    prune_invocation_folders()
