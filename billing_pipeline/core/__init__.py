"""Foundations: the vocabulary every other part of the pipeline shares, importing none of it.

Errors a person can act on (``errors``), the UTC hour and its text (``hours``), the hourly
partitions (``partitions``), the run clock (``clock``), asset keys (``asset_keys``), owners
(``ownership``) and run tags (``runs``). Layers above: resources and the database, then the
domains, then the runner and the command line; ``tests/unit/test_layers.py`` holds every import to it.
"""
