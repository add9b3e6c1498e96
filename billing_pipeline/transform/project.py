"""The dbt project (``dbt_project/``), built once and shared by the assets, the CLI and tests."""

from __future__ import annotations

import os
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from dagster_dbt import DbtProject

from billing_pipeline.db.connection import dbt_target

DBT_PROJECT_DIR = Path(__file__).resolve().parents[2] / "dbt_project"

# dbt's threads: the machines have two cores.
DBT_THREADS = 2

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)


def dbt_executable() -> str:
    """The dbt next to this interpreter (the venv's), else whatever is on PATH."""
    beside = Path(sys.executable).with_name("dbt")
    if beside.exists():
        return str(beside)
    return shutil.which("dbt") or "dbt"


def _sources_newer_than(path: Path) -> bool:
    mtime = path.stat().st_mtime
    for folder in ("models", "macros", "data_tests"):
        for file in (DBT_PROJECT_DIR / folder).rglob("*"):
            if file.suffix in (".sql", ".yml", ".yaml") and file.stat().st_mtime > mtime:
                return True
    return (DBT_PROJECT_DIR / "dbt_project.yml").stat().st_mtime > mtime


def ensure_manifest() -> Path:
    """Parse the project when its manifest is missing or older than a model, macro or test.

    Deployed images ship a parsed manifest; on a development machine and in CI the first import
    parses once (a few seconds, serialised across processes by dagster-dbt's guard).
    """
    dbt_project.prepare_if_dev()
    manifest = dbt_project.manifest_path
    if not manifest.exists() or _sources_newer_than(manifest):
        dbt_project.preparer.prepare(dbt_project)
    return manifest


def dbt_env(database_url: str) -> dict[str, str]:
    """The DBT_PG_* variables profiles.yml reads, for the database at ``database_url``.

    Works for a TCP host and for a Unix-socket folder (embedded pgserver) alike.
    """
    target = dbt_target(database_url)
    return {
        "DBT_PG_HOST": str(target["host"]),
        "DBT_PG_PORT": str(target["port"]),
        "DBT_PG_USER": str(target["user"]),
        "DBT_PG_PASSWORD": str(target["password"]),
        "DBT_PG_DBNAME": str(target["dbname"]),
    }


@contextmanager
def dbt_environment(database_url: str) -> Iterator[None]:
    """Point dbt (a subprocess inheriting os.environ) at ``database_url`` for the duration."""
    values = dbt_env(database_url)
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
