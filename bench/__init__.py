"""Benchmarks against raw baselines measured in the same run (see bench/README.md)."""
