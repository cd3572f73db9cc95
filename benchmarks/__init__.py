"""Benchmarks of fixedmodel against raw litellm; run them with ``python benchmarks/run.py``."""
