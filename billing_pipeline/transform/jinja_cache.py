"""dbt's compiled Jinja kept on disk, so a fresh process does not compile the same macros again.

Why: dbt renders every macro and every node's SQL through a Jinja template it compiles from the
source string (``dbt_common.clients.jinja.get_template`` -> ``Environment.from_string``). A
process compiles each one once and keeps it in memory, but every ``billing run`` is a fresh
process: its first dbt build compiled about 270 templates (materialisations, adapter macros, the
models' and tests' SQL), 0.45 s of a 2.2 s build on the small platform, and the second build
about 100 more. The templates are the same from run to run.

How: Jinja's own bytecode cache (``jinja2.FileSystemBytecodeCache``, the marshalled code object
behind a header of Jinja's format and Python's version) for templates dbt compiles from a
string. The key is the template's source and what the generated code depends on: the versions
of Jinja, dbt-common and dbt-core, and the environment's class (dbt's text and native
environments compile differently), extensions, filters and tests, delimiters and options. A
changed macro or model, or an upgrade, is a new key; an unreadable entry is compiled again.
Nothing else changes: the code object is the one ``compile`` would return, and dbt's own
in-memory template cache sits on top as before.

The cache lives in the dbt project's target folder and holds code that dbt runs, as Python's
``__pycache__`` does: it must be writable only by whoever may change the project. It holds at
most ``MAX_ENTRIES`` files (cleared when it grows past them, after many changes to the project).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from importlib import metadata
from pathlib import Path

import jinja2
from jinja2.bccache import Bucket, FileSystemBytecodeCache

# Well above one project's templates (about 500 here); a cache past this holds mostly stale ones.
MAX_ENTRIES = 5000
SUFFIX = ".jinja"
_UNCACHED = "_billing_uncached_compile"  # the class attribute keeping the original compile
_installed_in: Path | None = None  # the folder this process's cache is in


def install(directory: Path) -> None:
    """Cache the compiles of dbt's Jinja environments in ``directory`` for this process.

    Installing again (another directory) replaces the cache. Nothing is installed when dbt's
    environment class is not where this dbt version kept it, when the folder cannot be made, or
    under ``DBT_MACRO_DEBUGGING`` (dbt then keeps each compiled source for the debugger, which a
    cached compile would skip): the cache only saves time."""
    global _installed_in
    if os.environ.get("DBT_MACRO_DEBUGGING") or directory == _installed_in:
        return  # every dbt call installs it: once per process and folder is enough
    try:
        # The text environment; the native one (NativeSandboxEnvironment) is its subclass.
        from dbt_common.clients.jinja import MacroFuzzEnvironment
    except ImportError:
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
        entries = [entry for entry in directory.iterdir() if entry.is_file()]  # a crashed write's .tmp too
        if len(entries) > MAX_ENTRIES:
            for entry in entries:
                entry.unlink(missing_ok=True)
    except OSError:  # a read-only image or target folder: dbt compiles as it always did
        return
    uncached = MacroFuzzEnvironment.__dict__.get(_UNCACHED, MacroFuzzEnvironment.compile)
    cache = FileSystemBytecodeCache(str(directory), f"%s{SUFFIX}")
    MacroFuzzEnvironment.compile = _caching_compile(uncached, cache, _library_versions())
    setattr(MacroFuzzEnvironment, _UNCACHED, uncached)
    _installed_in = directory


def _library_versions() -> tuple[str, ...]:
    """The versions of what generates and runs the code: Jinja, dbt's Jinja layer and dbt."""
    return tuple(_version(name) for name in ("jinja2", "dbt-common", "dbt-core"))


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "none"


def _caching_compile(compile_, cache: FileSystemBytecodeCache, versions: tuple[str, ...]):
    def compile(self, source, name=None, filename=None, raw=False, defer_init=False):
        # Only what from_string asks for (a source string, no name, a code object) is cached.
        if raw or name is not None or filename is not None or not isinstance(source, str):
            return compile_(self, source, name, filename, raw, defer_init)
        key = _key(self, source, defer_init, versions)
        try:
            bucket = cache.get_bucket(self, key, None, source)
        except Exception:  # an entry damaged past Jinja's own checks: compiled again, rewritten
            bucket = Bucket(self, cache.get_cache_key(key), cache.get_source_checksum(source))
        if bucket.code is None:
            bucket.code = compile_(self, source, name, filename, raw, defer_init)
            with contextlib.suppress(OSError):  # a full or read-only disk: compiled, just not kept
                cache.set_bucket(bucket)
        return bucket.code

    return compile


def _key(env: jinja2.Environment, source: str, defer_init: bool, versions: tuple[str, ...]) -> str:
    """The source and what the generated code depends on: the libraries' versions, and the
    environment's class, extensions, filters and tests (the compiler looks them up, and folds
    constant filter calls into the code), delimiters and options."""
    shape = (
        versions,
        _name(type(env)),
        sorted(_name(type(e)) for e in env.extensions.values()),
        sorted((n, _name(f), str(getattr(f, "jinja_pass_arg", ""))) for n, f in env.filters.items()),
        sorted((n, _name(f), str(getattr(f, "jinja_pass_arg", ""))) for n, f in env.tests.items()),
        env.block_start_string,
        env.block_end_string,
        env.variable_start_string,
        env.variable_end_string,
        env.comment_start_string,
        env.comment_end_string,
        env.line_statement_prefix,
        env.line_comment_prefix,
        env.trim_blocks,
        env.lstrip_blocks,
        env.newline_sequence,
        env.keep_trailing_newline,
        env.optimized,
        _name(env.autoescape) if callable(env.autoescape) else env.autoescape,
        _name(env.finalize) if env.finalize else None,
        env.is_async,
        defer_init,
    )
    digest = hashlib.sha256(repr(shape).encode())
    digest.update(b"\0")
    digest.update(source.encode())
    return digest.hexdigest()


def _name(obj) -> str:
    return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', type(obj).__qualname__)}"
