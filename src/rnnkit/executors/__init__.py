"""Executors: how a cell runs over a whole sequence (see :mod:`rnnkit.executors.base`)."""

from rnnkit.executors.base import Executor, RunRequest, RunResult, StepMasks, Sweep, flip_sequences
from rnnkit.executors.dispatch import (
    backend_names,
    choose,
    get_executor,
    register_executor,
)

__all__ = [
    "Executor",
    "RunRequest",
    "RunResult",
    "StepMasks",
    "Sweep",
    "backend_names",
    "choose",
    "flip_sequences",
    "get_executor",
    "register_executor",
]
