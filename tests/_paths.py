"""Folders the tests read from, wherever a test file sits in the tree that mirrors ``src/``."""

from pathlib import Path

TESTS = Path(__file__).resolve().parent
DATA = TESTS / "data"  # small real data sets the tests use
ROOT = TESTS.parent  # the repository (benchmarks/, docs/)
