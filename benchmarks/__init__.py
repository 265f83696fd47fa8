"""Measurement scripts; each writes its tables to benchmarks/results/. Run one from the repository root as a module:
`python -m benchmarks.NAME` (`--help` for its options). benchmarks.common holds what they share."""
