"""framering's benchmarks (installed as ``framering.benchmarks``; run with ``framering bench``)."""
