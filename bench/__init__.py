"""Benchmarks: each prints ratios against a peer run in the same process (direct MLServer, raw Kafka)."""
