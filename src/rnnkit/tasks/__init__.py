"""Synthetic sequence tasks with a known answer, for demos, memory benchmarks and diagnostics.

Each task is a pure data generator (tensors in, tensors out); models and training live elsewhere.
"""

from rnnkit.tasks.adding import ADDING_BASELINE_MSE, adding_batch

__all__ = ["ADDING_BASELINE_MSE", "adding_batch"]
