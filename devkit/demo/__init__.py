"""The end-to-end demo: `scripts/demo` (or `python -m devkit.demo`)."""
