"""Running the pipeline's hourly cycle through Dagster (``cycle``) and the run clock (``clock``)."""
