"""The ingestion's pause of the cyclic collector: nested and concurrent pauses end together, and
the collector comes back as it was."""

from __future__ import annotations

import gc
import threading

import pytest

from billing_pipeline.core.gc_pause import cyclic_gc_paused


@pytest.fixture(autouse=True)
def _restore_gc():
    was = gc.isenabled()
    yield
    (gc.enable if was else gc.disable)()


def test_the_collector_is_paused_inside_and_enabled_again_after_even_on_error():
    gc.enable()
    with pytest.raises(RuntimeError):
        with cyclic_gc_paused():
            assert not gc.isenabled()
            raise RuntimeError("boom")
    assert gc.isenabled()


def test_nested_and_concurrent_pauses_end_when_the_last_one_does():
    gc.enable()
    inside, release = threading.Event(), threading.Event()

    def worker():
        with cyclic_gc_paused():
            inside.set()
            release.wait(5)

    with cyclic_gc_paused():
        thread = threading.Thread(target=worker)
        thread.start()
        inside.wait(5)
        with cyclic_gc_paused():
            assert not gc.isenabled()
    assert not gc.isenabled(), "the worker's pause is still open"
    release.set()
    thread.join()
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off():
    gc.disable()
    with cyclic_gc_paused():
        pass
    assert not gc.isenabled()
