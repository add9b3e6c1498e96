"""dbt in the run's own process, through dbt's programmatic runner (``dbtRunner``).

Why: a dbt subprocess pays dbt's imports (3.3 s on these machines) and loads its parse state
(about 1 s) on every call, and the hourly cycle calls dbt twice. In the run's process dbt is
imported once, the project is parsed once per database and process, and every later call
starts from that parsed manifest (dbt's "reusing objects":
https://docs.getdbt.com/reference/programmatic-invocations). The Jinja templates dbt compiles
are kept on disk, so a fresh process loads them instead of compiling them (``jinja_cache``).

What stays as with the subprocess:
- dbt's structured events become Dagster events through dagster-dbt's own conversion
  (``DbtCoreCliEventMessage.to_default_asset_events``), so assets, checks and metadata match;
- the selection is dagster-dbt's, cut from the context (subsets included);
- a call that fails leaves dbt's debug log, ``dbt.log``, in its own target folder (not its JSON
  artifacts: nothing reads them). It is written from the call's events, kept in memory, and only
  when the call fails: a call that succeeds has its folder removed (``project.invocation_target``).
  dbt's own file log stays off: with ``--log-level none`` and no level of its own, dbt wrote no
  dbt.log at all, so until the sixth session a failed build's message named a file that did not
  exist (tests/integration/test_dbt_models.py now reads it). dbt writing it line by line at debug
  level would cost 0.3–0.4 s of the hour's two builds (bench/small_run_floor.py's process);
- a failed call raises ``DagsterDbtCliRuntimeError`` naming dbt's errors, after its events.

A subset too large for command-line selection makes dagster-dbt write a selectors.yml into a
temporary copy of the project; that call goes to the subprocess as before (``None`` here).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dagster_dbt.asset_utils import (
    extract_runtime_selection_from_args,
    get_updated_cli_invocation_params_for_context,
)
from dagster_dbt.core.dbt_cli_event import DbtCoreCliEventMessage
from dagster_dbt.errors import DagsterDbtCliRuntimeError

from billing_pipeline.transform import jinja_cache
from billing_pipeline.transform.project import (
    DBT_PROJECT_DIR,
    PARTIAL_PARSE_FILE,
    TARGET_DIR,
    ensure_manifest,
    sources_newer_than,
)

# The events dagster-dbt turns into materialisations and check results.
RESULT_EVENTS = frozenset({"LogSeedResult", "LogModelResult", "LogSnapshotResult", "LogTestResult"})
# dbt's own lines shown in the step's stdout, as the subprocess prints them.
SHOWN_LEVELS = frozenset({"info", "warn", "error"})

# How every in-process call reports. --log-level none: the console lines come from the call's
# events (``_run``). --log-level-file none: the debug log is written from those events, and only
# for a failed call (module doc). --no-write-json: the events carry everything the assets
# report, and writing manifest.json and run_results.json into a folder removed right after cost
# 0.9 s a call.
OUTPUT_FLAGS = ("--log-level", "none", "--log-level-file", "none", "--no-write-json")

# dbt's compiled Jinja, shared by every database: the templates do not name one.
JINJA_CACHE_DIR = TARGET_DIR / "jinja"
# One dbt call at a time per process: dbt keeps its flags, adapters and event manager global.
_DBT_LOCK = threading.Lock()
# (database, manifest.json's mtime) -> the Manifest dbt parsed for it in this process.
_PARSED: dict[tuple[str, int], Any] = {}


def _paths(target: Path) -> list[str]:
    return [
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROJECT_DIR),
        "--target-path",
        str(target),
        "--log-path",
        str(target),
    ]


def _database_identity() -> str:
    """The database dbt is pointed at (``dbt_environment`` sets DBT_PG_* before a call): the
    manifest names it in every relation, so a manifest serves one database only."""
    return "/".join(os.environ.get(k, "") for k in ("DBT_PG_HOST", "DBT_PG_PORT", "DBT_PG_USER", "DBT_PG_DBNAME"))


def parsed_manifest(target: Path):
    """The project parsed for the current database: once per process, then reused.

    First choice: the project's own parse state (``project_manifest``), loaded and pointed at
    this database, with no parse at all. Else the project is parsed in ``target``, which
    ``invocation_target`` seeded with the database's parse state, so even that parse is partial."""
    from dbt.cli.main import dbtRunner

    key = (_database_identity(), ensure_manifest().stat().st_mtime_ns)
    if key not in _PARSED:
        manifest = project_manifest(os.environ.get("DBT_PG_DBNAME"))
        if manifest is None:
            result = dbtRunner().invoke(["parse", "--quiet", *_paths(target)])
            if not result.success:
                raise DagsterDbtCliRuntimeError(
                    description=f"dbt could not parse {DBT_PROJECT_DIR}: {result.exception}; see {target / 'dbt.log'}"
                )
            manifest = result.result
        _PARSED.clear()  # a changed project or another database: the old manifest is done with
        _PARSED[key] = manifest
    return _PARSED[key]


def project_manifest(database: str | None):
    """The project's parse state (``target/partial_parse.msgpack``, written by the parse that
    wrote ``manifest.json``: ``ensure_manifest``), as dbt's Manifest naming ``database``; None when
    it is missing, older than a model, macro or test, or does not load (another dbt version).

    Why this is the same manifest a parse for ``database`` gives: dbt's parse state depends on the
    connection only through the database name it writes into each node (``database``,
    ``relation_name``); the models never read ``target.dbname`` (tests/unit/test_dbt_parse_once.py
    holds that true). Rewriting those two fields is what ``manifest_for_database`` does for
    Dagster's copy. dbt itself keys its partial parse on the whole connection, hence a full parse
    for every new database and a partial one in every fresh process before this.
    """
    if not database:
        return None
    state = TARGET_DIR / PARTIAL_PARSE_FILE
    try:
        if not state.exists() or sources_newer_than(state):
            return None
        from dbt.contracts.graph.manifest import Manifest
        from dbt.parser.manifest import extended_mashumuro_decoder

        manifest = Manifest.from_msgpack(state.read_bytes(), decoder=extended_mashumuro_decoder)
    except Exception:  # an unreadable or foreign state: parse as before
        return None
    for collection in (manifest.nodes, manifest.sources, manifest.unit_tests):
        for node in collection.values():
            old = getattr(node, "database", None)
            if not old or old == database:
                continue
            node.database = database
            relation = getattr(node, "relation_name", None)
            if relation and relation.startswith(f'"{old}".'):
                node.relation_name = f'"{database}".' + relation[len(f'"{old}".') :]
    manifest.build_parent_and_child_maps()
    manifest.build_group_map()
    manifest.build_flat_graph()
    return manifest


def stream_in_process(args: list[str], *, context, translator, target: Path) -> Iterator | None:
    """Run ``dbt <args>`` for ``context``'s selection in this process; its Dagster events.

    ``None`` when the call cannot run here (see the module doc): the caller runs the subprocess.
    """
    cleaned, selects, excludes = extract_runtime_selection_from_args(args)
    params = get_updated_cli_invocation_params_for_context(
        context=context,
        manifest={},
        dagster_dbt_translator=translator,
        runtime_selects=selects,
        runtime_excludes=excludes,
    )
    if params.dbt_project is not None and Path(params.dbt_project.project_dir).resolve() != DBT_PROJECT_DIR:
        return None
    return _run(cleaned, params, context=context, target=target)


def _run(cleaned: list[str], params, *, context, target: Path) -> Iterator:
    from dbt.cli.main import dbtRunner
    from dbt_common.events.functions import msg_to_dict

    results: list[dict] = []
    errors: list[str] = []
    every_event: list = []  # for dbt.log, written only if the call fails (module doc)

    def on_event(msg) -> None:
        # dbt fires every event here (about 1,500 a build, SQL debug lines included): all are
        # kept for a failure's debug log; the results and the lines a person reads are used now.
        every_event.append(msg)
        name, level = msg.info.name, msg.info.level
        if name in RESULT_EVENTS:
            results.append(msg_to_dict(msg))
        if level in SHOWN_LEVELS:
            sys.stdout.write(msg.info.msg + "\n")
            if level == "error":
                errors.append(msg.info.msg)

    with _DBT_LOCK:
        jinja_cache.install(JINJA_CACHE_DIR)
        manifest = parsed_manifest(target)
        # The indirect selection dagster-dbt puts in the subprocess' environment (for asset-check
        # subsets) is dbt's --indirect-selection flag here: this process' environment is not written.
        indirect = ["--indirect-selection", params.indirect_selection] if params.indirect_selection else []
        outcome = dbtRunner(manifest=manifest, callbacks=[on_event]).invoke(
            [*cleaned, *_paths(target), *OUTPUT_FLAGS, *indirect, *params.selection_args]
        )
        sys.stdout.flush()

    for raw in results:
        yield from DbtCoreCliEventMessage(raw_event=raw, event_history_metadata={}).to_default_asset_events(
            manifest=params.manifest,
            dagster_dbt_translator=params.dagster_dbt_translator,
            context=context,
            target_path=target,
            project=params.dbt_project,
        )
    if not outcome.success:
        write_debug_log(target / "dbt.log", every_event)
        why = "\n\n".join(errors) or str(outcome.exception or "dbt reported failure")
        raise DagsterDbtCliRuntimeError(
            description=f"dbt {' '.join(cleaned)} failed (in process; the debug log is {target / 'dbt.log'}):\n\n{why}"
        )


def write_debug_log(path: Path, events: list) -> None:
    """dbt's debug log of one call, from its events, in the lines dbt's own file log writes
    (time, level, thread, message; secrets in the environment scrubbed as dbt scrubs them)."""
    from dbt_common.events.format import timestamp_to_datetime_string
    from dbt_common.events.functions import env_scrubber

    with path.open("w") as log:
        for msg in events:
            info = msg.info
            thread = info.thread[:10].ljust(10)
            log.write(
                f"{timestamp_to_datetime_string(info.ts)} [{info.level:<5}] [{thread}]: {env_scrubber(info.msg)}\n"
            )
