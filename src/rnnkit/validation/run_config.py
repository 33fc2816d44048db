"""A run directory's config.json read back through the same checks as the options that wrote it.

config.json is untrusted input (run directories are shared, edited, damaged): before a command uses
it, every top-level key must be one rnnkit writes, ``task`` must be there and hold the app's task
options (typed and range-checked by the app's schema), ``train`` (when there) the :class:`TrainConfig` options.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from rnnkit.errors import UserError
from rnnkit.validation.checks import check_mapping, show, unknown_option

#: the top-level keys rnnkit's run directories hold (runner.fit, rnnkit.save, the apps' extras)
RUN_KEYS = {"rnnkit_version", "model", "app", "task", "train", "resumes", "init_from", "data_info", "stats"}
#: app name -> "module:Class" of its task options (imported when a run of that app is read)
TASK_CONFIGS: dict[str, str] = {
    "adding": "rnnkit.apps.adding.task:AddingConfig",
    "text": "rnnkit.apps.text.task:TextConfig",
    "forecast": "rnnkit.apps.forecast.options:ForecastConfig",
    "classify": "rnnkit.apps.classify.options:ClassifyConfig",
}


def register_task_config(app: str, target: str, extra_keys: tuple[str, ...] = ()) -> None:
    """Declare app ``app``'s task options (``"module:Class"``) and any top-level keys it adds."""
    TASK_CONFIGS[app] = target
    RUN_KEYS.update(extra_keys)


def task_class(app: str) -> type | None:
    target = TASK_CONFIGS.get(app)
    if target is None:
        return None
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def check_run_config(saved: dict[str, Any], source: str, app: str | None = None) -> dict[str, Any]:
    """``saved`` (config.json of a training run) checked; ``app``: the app expected to have written it."""
    from rnnkit.training.config import TrainConfig

    for key in saved:
        if key not in RUN_KEYS:
            raise unknown_option(key, RUN_KEYS, source)
    found = saved.get("app")
    if not isinstance(found, str):
        raise UserError(f"{source}: app = {show(found)} names no known app: expected the name of the app "
                        "that trained the run")
    if app is not None and found != app:
        raise UserError(f"{source}: the run was trained by the {show(found)} app, not {app}")
    if "task" not in saved:
        raise UserError(f"{source}: no 'task' entry: the file is damaged or was not written by rnnkit")
    for section in ("task", "train"):  # train: absent in runs written before it was saved
        if not isinstance(saved.get(section, {}), dict):
            raise UserError(f"{source}: '{section}' must be a JSON object, got {type(saved[section]).__name__}")
    check_mapping(TrainConfig, saved.get("train", {}), f"{source}: train")
    cls = task_class(found)
    if cls is not None:
        check_mapping(cls, saved["task"], f"{source}: task")
    return saved


def read_run_config(run_dir: str | os.PathLike, app: str | None = None) -> dict[str, Any]:
    """``run_dir/config.json`` parsed and checked (:func:`check_run_config`), or one line naming the file."""
    from rnnkit.io.saving import CONFIG_FILE, read_config

    return check_run_config(read_config(run_dir), str(Path(run_dir) / CONFIG_FILE), app)
