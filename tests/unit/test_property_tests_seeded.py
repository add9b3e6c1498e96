"""Every property test is seeded: the suite's Hypothesis profile (tests/conftest.py) derandomises
every test, collection refuses one that opts out, and every module with a @given is checked here
even when only the unit tier runs."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
from hypothesis import given, seed, settings
from hypothesis import strategies as st

from tests.conftest import is_seeded

TESTS = Path(__file__).resolve().parents[1]


def test_the_loaded_profile_is_derandomised_and_keeps_no_example_database():
    assert settings.default.derandomize is True
    assert settings.default.database is None


def test_a_property_test_that_opts_out_is_not_seeded_and_one_with_a_seed_is():
    @settings(derandomize=False)
    @given(st.integers())
    def opted_out(n):
        pass

    @seed(20)
    @settings(derandomize=False)
    @given(st.integers())
    def pinned(n):
        pass

    @settings(max_examples=5)
    @given(st.integers())
    def inherits(n):
        pass

    assert not is_seeded(opted_out)
    assert is_seeded(pinned) and is_seeded(inherits)
    assert is_seeded(test_the_loaded_profile_is_derandomised_and_keeps_no_example_database)  # not a property test


def _property_modules() -> list[str]:
    return sorted(
        ".".join(path.relative_to(TESTS.parent).with_suffix("").parts)
        for path in TESTS.rglob("test_*.py")
        if re.search(r"^@given\(", path.read_text(), re.MULTILINE)  # a module-level property test
    )


def test_the_property_test_modules_are_found():
    modules = _property_modules()
    for expected in (
        "tests.unit.test_lifecycle_machine",
        "tests.integration.test_lifecycle_machine_db",
        "tests.integration.test_trust_properties",
        "tests.integration.test_trust_inputs",
    ):
        assert expected in modules


@pytest.mark.parametrize("module", _property_modules())
def test_every_property_test_is_seeded(module):
    tests = [obj for obj in vars(importlib.import_module(module)).values() if getattr(obj, "is_hypothesis_test", False)]
    assert tests, f"{module} has a @given but no property test was found in it"
    assert [t.__name__ for t in tests if not is_seeded(t)] == []
