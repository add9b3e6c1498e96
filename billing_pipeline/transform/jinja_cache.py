"""dbt's compiled Jinja kept on disk, so a fresh process does not compile the same macros again.

Why: dbt renders every macro and every node's SQL through a Jinja template it compiles from the
source string (``dbt_common.clients.jinja.get_template`` -> ``Environment.from_string``). A
process compiles each one once and keeps it in memory, but every ``billing run`` is a fresh
process: its first dbt build compiled about 270 templates (materialisations, adapter macros, the
models' and tests' SQL), 0.45 s of a 2.2 s build on the small platform, and the second build
about 100 more. The templates are the same from run to run.

How: Jinja's own bytecode cache (``jinja2.FileSystemBytecodeCache``, the marshalled code object
behind a header of Jinja's format and Python's version) for templates dbt compiles from a
string. The key is the template's source and what of the environment shapes the generated code:
its class (dbt's text and native environments compile differently), its extensions, delimiters
and options. A changed macro or model is a new key; an unreadable or foreign entry is compiled
again, as Jinja's cache does. Nothing else changes: the code object is the one ``compile`` would
return, and dbt's own in-memory template cache sits on top as before.

The cache lives in the dbt project's target folder, beside dbt's own parse state, which dbt
trusts in the same way; it holds at most ``MAX_ENTRIES`` files (cleared when it grows past them,
after a project has changed many times).
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

import jinja2
from jinja2.bccache import FileSystemBytecodeCache

# Well above one project's templates (about 500 here); a cache past this holds mostly stale ones.
MAX_ENTRIES = 5000
SUFFIX = ".jinja"
_UNCACHED = "_billing_uncached_compile"  # the class attribute keeping the original compile


def install(directory: Path) -> None:
    """Cache the compiles of dbt's Jinja environments in ``directory`` for this process.

    Installing again (another directory) replaces the cache. When dbt's environment class is not
    where this dbt version kept it, nothing is installed: the cache only saves time."""
    try:
        # The text environment; the native one (NativeSandboxEnvironment) is its subclass.
        from dbt_common.clients.jinja import MacroFuzzEnvironment
    except ImportError:
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
        entries = list(directory.glob(f"*{SUFFIX}"))
        if len(entries) > MAX_ENTRIES:
            for entry in entries:
                entry.unlink(missing_ok=True)
    except OSError:  # a read-only image or target folder: dbt compiles as it always did
        return
    uncached = MacroFuzzEnvironment.__dict__.get(_UNCACHED, MacroFuzzEnvironment.compile)
    MacroFuzzEnvironment.compile = _caching_compile(uncached, FileSystemBytecodeCache(str(directory), f"%s{SUFFIX}"))
    setattr(MacroFuzzEnvironment, _UNCACHED, uncached)


def _caching_compile(compile_, cache: FileSystemBytecodeCache):
    def compile(self, source, name=None, filename=None, raw=False, defer_init=False):
        # Only what from_string asks for (a source string, no name, a code object) is cached.
        if raw or name is not None or filename is not None or not isinstance(source, str):
            return compile_(self, source, name, filename, raw, defer_init)
        bucket = cache.get_bucket(self, _key(self, source, defer_init), None, source)
        if bucket.code is None:
            bucket.code = compile_(self, source, name, filename, raw, defer_init)
            with contextlib.suppress(OSError):  # a full or read-only disk: compiled, just not kept
                cache.set_bucket(bucket)
        return bucket.code

    return compile


def _key(env: jinja2.Environment, source: str, defer_init: bool) -> str:
    """The source and every setting of ``env`` that the generated code depends on."""
    shape = (
        jinja2.__version__,
        f"{type(env).__module__}.{type(env).__qualname__}",
        sorted(f"{type(e).__module__}.{type(e).__qualname__}" for e in env.extensions.values()),
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
        env.autoescape
        if not callable(env.autoescape)
        else f"{env.autoescape.__module__}.{env.autoescape.__qualname__}",
        env.finalize is None,
        env.is_async,
        defer_init,
    )
    digest = hashlib.sha256(repr(shape).encode())
    digest.update(b"\0")
    digest.update(source.encode())
    return digest.hexdigest()
