"""A ranged run's hourly materialisations are written in batches (definitions.py)."""

import importlib
import os


def test_the_definitions_turn_batched_event_writes_on_unless_the_environment_chose(monkeypatch):
    """Every process that runs the steps loads the definitions, which set Dagster's event batch
    size (one INSERT per output of a ranged run, not one per hour); a value already set wins."""
    import billing_pipeline.definitions as definitions

    monkeypatch.delenv("DAGSTER_EVENT_BATCH_SIZE", raising=False)
    importlib.reload(definitions)
    assert os.environ["DAGSTER_EVENT_BATCH_SIZE"] == definitions.EVENT_BATCH_SIZE == "1000"
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "7")
    importlib.reload(definitions)
    assert os.environ["DAGSTER_EVENT_BATCH_SIZE"] == "7"
