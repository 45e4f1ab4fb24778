"""Ingest: watch the bus buckets, keep the current state, turn changes into push requests."""
