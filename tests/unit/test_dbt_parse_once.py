"""The project's dbt parse state serves every database (transform/in_process.project_manifest)
only while no model, macro or test reads the connection's database name at parse time: the
loaded state is pointed at a database by rewriting each node's ``database`` and
``relation_name``, nothing else. This test keeps that true."""

from __future__ import annotations

import re

from billing_pipeline.transform.project import DBT_PROJECT_DIR

READS_THE_DATABASE = re.compile(r"target\s*\.\s*(dbname|database)|target\s*\[\s*['\"](dbname|database)")


def test_no_model_macro_or_test_reads_the_target_database():
    readers = [
        str(path.relative_to(DBT_PROJECT_DIR))
        for folder in ("models", "macros", "data_tests", "snapshots", "seeds")
        for path in (DBT_PROJECT_DIR / folder).rglob("*")
        if path.suffix in (".sql", ".yml", ".yaml") and READS_THE_DATABASE.search(path.read_text())
    ]
    assert readers == []


def test_the_check_sees_a_reader():
    assert READS_THE_DATABASE.search("select '{{ target.dbname }}'")
    assert READS_THE_DATABASE.search("{{ target['database'] }}")
    assert not READS_THE_DATABASE.search("{{ target.schema }}")
