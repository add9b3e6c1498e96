"""The end-to-end demo: `scripts/demo` (or `python -m billing_pipeline.demo`)."""
