"""dbt's compiled Jinja kept on disk (transform/jinja_cache.py): a warm cache compiles nothing,
renders the same, and never serves a template for another source or environment."""

import jinja2
import pytest
from dbt_common.clients import jinja as dbt_jinja
from dbt_common.clients.jinja import MacroFuzzEnvironment, NativeSandboxEnvironment, get_template
from dbt_common.exceptions import CompilationError
from jinja2.bccache import bc_magic

from billing_pipeline.transform import jinja_cache

TEMPLATE = "{% for i in items %}{% set cost = i * 2 %}{{ cost }} credits;{% endfor %}"


@pytest.fixture
def cache_dir(tmp_path):
    """A fresh cache directory, and dbt's environment class as it was after the test."""
    saved = {
        k: MacroFuzzEnvironment.__dict__[k]
        for k in ("compile", jinja_cache._UNCACHED)
        if k in MacroFuzzEnvironment.__dict__
    }
    jinja_cache.install(tmp_path)
    yield tmp_path
    jinja_cache._installed_in = None
    for k in ("compile", jinja_cache._UNCACHED):
        if k in saved:
            setattr(MacroFuzzEnvironment, k, saved[k])
        elif k in MacroFuzzEnvironment.__dict__:
            delattr(MacroFuzzEnvironment, k)


def render(source, native=False, **ctx):
    return get_template(source, {}, native=native).render(ctx)


def forbid_compiling(monkeypatch):
    """From now on any compile from source fails: what renders came from the cache on disk."""

    def refuse(self, source, name, filename):
        raise AssertionError(f"compiled again: {source[:40]!r}")

    monkeypatch.setattr(jinja2.Environment, "_parse", refuse)


def entries(folder):
    return sorted(folder.glob(f"*{jinja_cache.SUFFIX}"))


def test_a_warm_cache_compiles_nothing_and_renders_the_same(cache_dir, monkeypatch):
    cold = render(TEMPLATE, items=[1, 2, 3])
    assert cold == "2 credits;4 credits;6 credits;"
    assert len(entries(cache_dir)) == 1

    forbid_compiling(monkeypatch)
    assert render(TEMPLATE, items=[1, 2, 3]) == cold
    assert render(TEMPLATE, items=[5]) == "10 credits;"


def test_the_text_and_native_environments_are_kept_apart(cache_dir, monkeypatch):
    source = "{{ a }}-{{ b }}"
    # The two environments generate different code for one source: one entry must not serve both.
    assert MacroFuzzEnvironment().compile(source, raw=True) != NativeSandboxEnvironment().compile(source, raw=True)
    assert render(source, a=1, b=2) == "1-2"
    assert render(source, native=True, a=1, b=2) == "1-2"
    assert len(entries(cache_dir)) == 2

    forbid_compiling(monkeypatch)
    assert render(source, a=3, b=4) == "3-4"
    assert render(source, native=True, a=3, b=4) == "3-4"


def test_a_changed_source_is_compiled_not_served_from_the_old_entry(cache_dir):
    assert render("{{ a }} + 1", a=1) == "1 + 1"
    assert render("{{ a }} + 2", a=1) == "1 + 2"
    assert len(entries(cache_dir)) == 2


def test_an_unreadable_entry_is_compiled_again_and_rewritten(cache_dir):
    render(TEMPLATE, items=[1])
    (entry,) = entries(cache_dir)
    entry.write_bytes(b"not a code object")
    assert render(TEMPLATE, items=[1, 2]) == "2 credits;4 credits;"
    assert entry.read_bytes() != b"not a code object"


def test_a_syntax_error_is_dbts_error_and_writes_nothing(cache_dir):
    with pytest.raises(CompilationError):
        render("{% if %}")
    assert entries(cache_dir) == []


def test_an_overgrown_cache_is_cleared_when_installed(tmp_path, monkeypatch, cache_dir):
    monkeypatch.setattr(jinja_cache, "MAX_ENTRIES", 3)
    for i in range(4):
        (tmp_path / f"stale{i}{jinja_cache.SUFFIX}").write_bytes(b"x")
    monkeypatch.setattr(jinja_cache, "_installed_in", None)  # as a new process would
    jinja_cache.install(tmp_path)
    assert entries(tmp_path) == []
    assert render("{{ 3 }}") == "3"
    assert len(entries(tmp_path)) == 1


def test_a_folder_that_cannot_be_written_leaves_dbt_compiling_as_before(tmp_path, cache_dir):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder would be")
    installed = MacroFuzzEnvironment.compile
    jinja_cache.install(blocked / "jinja")  # cannot be created: nothing installed, nothing raised
    assert MacroFuzzEnvironment.compile is installed
    assert render("{{ 2 + 2 }}") == "4"


def test_another_filter_set_or_dbt_version_is_another_entry(cache_dir, monkeypatch):
    """The compiler looks filters up and folds constant calls into the code: an environment with
    another filter, or another dbt, must not be served this one's code."""
    assert render("{{ 'abc' | as_text }}") == "abc"
    monkeypatch.setitem(dbt_jinja.TEXT_FILTERS, "as_text", lambda x: x.upper())
    assert render("{{ 'abc' | as_text }}") == "ABC"
    assert len(entries(cache_dir)) == 2
    monkeypatch.setattr(jinja_cache, "_library_versions", lambda: ("0", "0", "0"))
    monkeypatch.setattr(jinja_cache, "_installed_in", None)  # as a new process would
    jinja_cache.install(cache_dir)
    assert render("{{ 'abc' | as_text }}") == "ABC"
    assert len(entries(cache_dir)) == 3


def test_an_entry_damaged_past_jinjas_checks_is_compiled_again(cache_dir):
    render(TEMPLATE, items=[1])
    (entry,) = entries(cache_dir)
    entry.write_bytes(bc_magic + b"\x80not a pickle")  # Jinja's header, then a broken checksum
    assert render(TEMPLATE, items=[1, 2]) == "2 credits;4 credits;"
    assert entry.read_bytes().startswith(bc_magic) and b"not a pickle" not in entry.read_bytes()


def test_installing_again_in_the_same_folder_keeps_the_installed_cache(cache_dir):
    installed = MacroFuzzEnvironment.compile
    jinja_cache.install(cache_dir)  # each dbt call does this
    assert MacroFuzzEnvironment.compile is installed
