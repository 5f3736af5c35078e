"""Benchmarks for the cnnlesson package, run with ``python -m benchmarks [--quick]``."""
