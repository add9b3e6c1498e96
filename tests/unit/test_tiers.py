"""The tiers hold: a unit test is marked ``unit`` by its folder and cannot reach a database."""

import pytest


def test_a_unit_test_is_marked_by_its_folder(request):
    assert request.node.get_closest_marker("unit") is not None
    assert request.node.get_closest_marker("integration") is None


def test_a_unit_test_that_asks_for_a_database_is_refused(request):
    with pytest.raises(pytest.UsageError, match="belongs in tests/integration"):
        request.getfixturevalue("databases")
