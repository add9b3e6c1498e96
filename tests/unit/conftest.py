"""The unit tier uses no services: asking for a database fails at once, naming where the test
belongs."""

import pytest


@pytest.fixture(scope="session")
def databases():
    raise pytest.UsageError("a unit test asked for a database: it belongs in tests/integration/")
