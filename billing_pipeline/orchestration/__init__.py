"""Running the pipeline through Dagster: the cycle's jobs, sensors and schedule (``graph``),
launching runs as the daemon would (``launcher``), ``billing run`` (``cycle``, ``summary``) and
closing a month (``month_end``)."""
