"""``DiagnosticsCallback``: the gradient-flow diagnostics every N optimiser steps of a training run.

Turned on by ``TrainConfig.diagnostics_every = N`` (``--set diagnostics_every=N`` on the CLI). Every N
steps, on the main process, it asks the task for a diagnostic input (:meth:`SequenceTask.
diagnostic_inputs`: the model input and the loss of the model's output on the current batch),
records gradient flow, input influence, gate saturation and spectra into
``RUN_DIR/diagnostics/`` (``diagnostics.jsonl`` and PNGs, :class:`~rnnkit.diagnostics.
GradientFlowRecorder`) and logs the headline numbers (``diag/grad_ratio_l{layer}_d{dir}``: how much
of the loss's gradient survives back to the first step; ``diag/memory_horizon``) to the run's loggers
(log.csv, TensorBoard).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

from rnnkit.diagnostics.recorder import GradientFlowRecorder

DIAGNOSTICS_DIR = "diagnostics"


def headline_metrics(record: dict[str, Any]) -> dict[str, float]:
    """The numbers worth a log column: per-layer/direction gradient ratios and the memory horizon."""
    metrics: dict[str, float] = {}
    for layer, per_direction in enumerate(record["gradient_flow"]["ratio"]):
        for direction, ratio in enumerate(per_direction):
            value = float(ratio) if ratio is not None else math.nan
            metrics[f"diag/grad_ratio_l{layer}_d{direction}"] = value
    if record.get("influence") is not None:
        metrics["diag/memory_horizon"] = float(record["influence"]["horizon"])
    return metrics


class DiagnosticsCallback(pl.Callback):
    """Record the diagnostics every ``every_n_steps`` optimiser steps into ``out_dir``."""

    def __init__(self, every_n_steps: int, out_dir: str | Path, *, plots: bool = True) -> None:
        self.recorder = GradientFlowRecorder(every_n_steps, out_dir, plots=plots)
        self._last_step = -1

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = int(trainer.global_step)
        if not trainer.is_global_zero or step == self._last_step or step % self.recorder.every_n_steps:
            return
        self._last_step = step
        x, loss_of_output = pl_module.diagnostic_inputs(batch)
        self.recorder.loss_fn = lambda output, _batch: loss_of_output(output)
        record = self.recorder.on_train_step(pl_module.model, (x,), step)
        if record is None:
            return
        metrics = headline_metrics(record)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)
