"""Benchmarks that ship with the package (``rnnkit bench ...``); the speed benchmarks live in
``benchmarks/`` of the repository."""
