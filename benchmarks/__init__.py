"""framering's benchmarks (installed as ``framering_benchmarks``; run with ``framering bench``)."""
