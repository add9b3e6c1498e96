"""A ranged run's hourly materialisations are written in batches: an instance setting
(db/dagster_storage.py, ``BillingDagsterInstance``), in every process that opens the instance,
with nothing written to the environment."""

import os

import dagster as dg

from billing_pipeline.db.dagster_instance import instance_config
from billing_pipeline.db.dagster_storage import EVENT_BATCH_SIZE, BillingDagsterInstance


def _instance(tmp_path, **extra) -> dg.DagsterInstance:
    config = {"instance_class": instance_config({})["instance_class"], **extra}
    (tmp_path / "dagster.yaml").write_text(__import__("yaml").safe_dump(config))
    return dg.DagsterInstance.from_config(str(tmp_path))


def test_the_instance_batches_event_writes_unless_the_environment_chose(tmp_path, monkeypatch):
    monkeypatch.delenv("DAGSTER_EVENT_BATCH_SIZE", raising=False)
    before = dict(os.environ)
    with _instance(tmp_path) as instance:
        assert type(instance) is BillingDagsterInstance
        assert instance._get_event_batch_size() == EVENT_BATCH_SIZE == 1000
        monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "7")  # Dagster's own knob, set by a deployment, wins
        assert instance._get_event_batch_size() == 7
    monkeypatch.delenv("DAGSTER_EVENT_BATCH_SIZE")
    assert dict(os.environ) == before
    with _instance(tmp_path, event_batch_size=50) as instance:
        assert instance._get_event_batch_size() == 50
