"""What ``--resume`` may change, and the resume history it appends to ``config.json``.

A resumed run continues the checkpoint's model, optimiser and data order, so only options that do not
change what the checkpoint means may differ from the run's ``config.json``: they are applied and
recorded (``docs/training.md``). Any other difference (the cell, sizes, the optimiser, the data, the
seed...) is refused with one line: silently training something else than the file says is the bug
this module exists for (issue #23).
"""

from __future__ import annotations

import math
import time
from typing import Any

from rnnkit.errors import UserError

#: TrainConfig options a resume may change; each is applied for real (lr: the optimiser's and the
#: schedule's rates are rescaled after the checkpoint has loaded, see ``checkpoint_state.trusted_state``)
RESUMABLE_TRAIN = frozenset({
    "lr", "max_epochs", "max_steps", "early_stopping_patience", "early_stopping_min_delta",
    "clip_norm", "clip_value", "nan_policy", "nan_max_skips", "threads", "quiet", "tensorboard", "plots",
    "log_every_n_steps", "val_every_n_epochs", "diagnostics_every", "accelerator", "devices", "num_nodes",
})
#: task options a resume may change, per app: a time budget, and where the text corpus lies now
#: (the text app checks that the corpus read is the one the run was trained on)
RESUMABLE_TASK: dict[str, frozenset[str]] = {
    "text": frozenset({"minutes", "files", "pattern"}),
    # translate and speech: the budget, and the search of the end-of-training validation scores
    "translate": frozenset({"minutes", "beam"}),
    "speech": frozenset({"minutes", "beam"}),
}
#: how many resume records config.json keeps (the oldest are dropped): a crafted file stays bounded
MAX_HISTORY = 1000


def resume_changes(saved: dict[str, Any], run_config: dict[str, Any], source: str) -> dict[str, list[Any]]:
    """``{option: [recorded, new]}`` for every option that differs between the run's ``saved``
    config.json and the ``run_config`` about to run; a one-line :class:`UserError` for an option
    that may not change on resume."""
    changes: dict[str, list[Any]] = {}
    app = run_config.get("app")
    if saved.get("app", app) != app:
        raise UserError(f"{source}: the run is not a {app} run: resume it with its own app's command")
    for section, allowed in (("train", RESUMABLE_TRAIN), ("task", RESUMABLE_TASK.get(str(app), frozenset()))):
        old, new = saved.get(section, {}), run_config.get(section, {})
        if not isinstance(old, dict):
            raise UserError(f"{source}: '{section}' must be a JSON object")
        refused = []
        for key in sorted(set(old) & set(new)):
            if old[key] == new[key]:
                continue
            if key not in allowed:
                refused.append(key)
            else:
                changes[key] = [old[key], new[key]]
        if refused:
            may = ", ".join(sorted(allowed)) or "none"
            raise UserError(f"--resume cannot change {', '.join(refused[:4])} (the run has "
                            f"{_short(old[refused[0]])}, now {_short(new[refused[0]])}): start a new run with "
                            f"--out (--init-from copies the weights); options a resume may change: {may}")
    return changes


def lr_scale(changes: dict[str, list[Any]]) -> float:
    """The factor every learning rate of the checkpoint is multiplied by (1.0: lr unchanged)."""
    if "lr" not in changes:
        return 1.0
    old, new = changes["lr"]
    if isinstance(old, bool) or not isinstance(old, (int, float)) or not (math.isfinite(old) and old > 0):
        raise UserError("config.json: train.lr must be a positive number to resume with another --lr")
    return float(new) / float(old)


def with_history(saved: dict[str, Any], run_config: dict[str, Any], changes: dict[str, list[Any]],
                 step: int | None, epoch: int | None, source: str) -> dict[str, Any]:
    """``run_config`` with ``resumes``: the run's earlier records and one for this resume appended."""
    history = saved.get("resumes", [])
    if not isinstance(history, list) or not all(isinstance(r, dict) for r in history):
        raise UserError(f"{source}: 'resumes' must be a list of objects")
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "from_step": step, "from_epoch": epoch,
              "changed": changes}
    return {**run_config, "resumes": [*history, record][-MAX_HISTORY:]}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
