"""Long-term memory benchmarks (adding, copy, selective copy) across cells: ``rnnkit bench memory``."""
