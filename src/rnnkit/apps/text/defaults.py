"""The text app's defaults for the shared training options, in a module light enough for the CLI to
read when it builds ``--help`` (the task module imports Lightning)."""

from __future__ import annotations

from typing import Any

#: flags and --config override them
TRAIN_DEFAULTS: dict[str, Any] = {"batch_size": 64, "lr": 8e-3, "clip_norm": 1.0, "max_epochs": 20,
                                  "schedule": "cosine", "plateau_patience": 1, "gamma": 0.5, "min_lr": 1e-4,
                                  "log_every_n_steps": 20}
