"""Benchmarks of the DML training step (``python benchmarks/dml_bench.py``, ``make bench``)."""
