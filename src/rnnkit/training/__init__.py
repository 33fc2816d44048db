"""The training backbone every application shares, on Lightning (docs/training.md).

- :class:`TrainConfig` (``config.py``): optimiser, schedule, clipping, TBPTT, NaN policy, early
  stopping, seed, devices; resolved from defaults < ``--config`` file < flags.
- :class:`SequenceTask` (``task.py``): the LightningModule apps subclass (``compute_loss``).
- :func:`fit` (``runner.py``): train into a run directory (``rundir.py``), with resume and
  ``init_from``; DDP under ``torchrun``.
- TBPTT helpers (``tbptt.py``): :func:`split_time`, :func:`detach_state`, :class:`StatefulStreams`.
- ``cli_support.py``: the options and config resolution every app's ``train`` command shares.

Names are imported lazily: ``rnnkit.training.config`` and ``cli_support`` do not import Lightning
(seconds), so the ``rnnkit`` command starts fast; ``fit``/``SequenceTask`` do.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TrainConfig": "config", "read_config_file": "config", "resolve": "config",
    "fit": "runner", "seed_everything": "runner", "distributed_env": "runner",
    "NonFiniteLoss": "task", "SequenceTask": "task",
    "StatefulStreams": "tbptt", "detach_state": "tbptt", "split_time": "tbptt",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"rnnkit.training.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'rnnkit.training' has no attribute {name!r}")
