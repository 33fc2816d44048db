"""Synthetic sequence tasks with a known answer, for demos, memory benchmarks and diagnostics.

Each task is a pure data generator (tensors in, tensors out); models and training live elsewhere.
"""

from rnnkit.tasks.adding import ADDING_BASELINE_MSE, adding_batch
from rnnkit.tasks.copy_memory import copy_memory_baseline, copy_memory_batch
from rnnkit.tasks.selective_copy import selective_copy_batch, selective_copy_symbols

__all__ = [
    "ADDING_BASELINE_MSE",
    "adding_batch",
    "copy_memory_baseline",
    "copy_memory_batch",
    "selective_copy_batch",
    "selective_copy_symbols",
]
