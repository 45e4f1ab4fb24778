"""Benchmarks: load generators that run in their own processes; figures go to BENCHMARKS.md."""
