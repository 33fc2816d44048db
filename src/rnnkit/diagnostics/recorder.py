"""``GradientFlowRecorder``: record the diagnostics every N training steps, whatever the loop.

Call ``recorder.on_train_step(model, batch, step)`` from any training loop (plain PyTorch, Lightning,
...). Every ``every_n_steps`` steps it runs one traced forward pass on ``batch`` in eval mode and
appends a record to ``out_dir/diagnostics.jsonl`` with

- ``gradient_flow``: ``|dL/ds_k|`` per layer, direction, state component and boundary k, and the
  ratio ``|dL/ds_first| / |dL/ds_last|`` (see :mod:`rnnkit.diagnostics.gradient_flow`),
- ``influence``: ``|dy_T/dx_t|`` by lag and the memory horizon (:mod:`rnnkit.diagnostics.influence`),
- ``gates``: saturated fractions per gate (:mod:`rnnkit.diagnostics.gates`),
- ``spectrum``: singular values and spectral radius per gate block (:mod:`rnnkit.diagnostics.spectrum`),

and writes ``gradient_flow_step{step}.png``, ``influence_step{step}.png``, ``gates_step{step}.png``.
Every file is written atomically (temporary file, then ``os.replace``). The recording uses
``torch.autograd.grad``, so the parameters' ``.grad`` and the optimiser are untouched; the model's
train/eval modes are restored afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from rnnkit.diagnostics.influence import DEFAULT_FRACTION, model_prediction
from rnnkit.diagnostics.snapshot import snapshot
from rnnkit.diagnostics.trace import find_recurrent
from rnnkit.io.atomic import append_jsonl_atomic

LossFn = Callable[[Any, Any], Tensor]


def default_train_loss(output: Any, batch: Any) -> Tensor:
    """MSE between the model's output and ``batch[1]`` (shapes matched per sample)."""
    y = batch[1]
    out = output[0] if isinstance(output, tuple) else output
    if out.numel() != y.numel():
        raise ValueError(
            f"the default loss compares the model output ({tuple(out.shape)}) with batch[1] "
            f"({tuple(y.shape)}); pass loss_fn(output, batch) to GradientFlowRecorder"
        )
    return torch.nn.functional.mse_loss(out.reshape(y.shape), y)


class GradientFlowRecorder:
    """Record gradient flow, influence, gate saturation and spectra every ``every_n_steps`` steps.

    Args:
        every_n_steps: record when ``step % every_n_steps == 0``.
        out_dir: where ``diagnostics.jsonl`` and the PNGs go (created if missing).
        loss_fn: ``loss_fn(model_output, batch) -> scalar``; default :func:`default_train_loss`.
        output_fn: ``output_fn(model_output) -> (B, K)``, the ``y_T`` for influence; default
            :func:`~rnnkit.diagnostics.influence.model_prediction` (a Recurrent's last output, or a
            model's (B,) / (B, K) output; influence is skipped for other outputs).
        recurrent: name of the Recurrent submodule if the model holds several.
        influence, plots: turn those parts off to save time.
        num_projections: estimate influence from that many random projections instead of K passes.
    """

    def __init__(
        self,
        every_n_steps: int,
        out_dir: str | os.PathLike,
        *,
        loss_fn: LossFn | None = None,
        output_fn: Callable[[Any], Tensor] | None = None,
        recurrent: str | None = None,
        influence: bool = True,
        plots: bool = True,
        num_projections: int | None = None,
        horizon_fraction: float = DEFAULT_FRACTION,
    ) -> None:
        if not isinstance(every_n_steps, int) or every_n_steps < 1:
            raise ValueError(f"every_n_steps must be a positive int, got {every_n_steps!r}")
        self.every_n_steps = every_n_steps
        self.out_dir = Path(out_dir)
        self.loss_fn = loss_fn or default_train_loss
        self.output_fn = output_fn
        self.recurrent = recurrent
        self.influence = influence
        self.plots = plots
        self.num_projections = num_projections
        self.horizon_fraction = horizon_fraction

    @property
    def jsonl_path(self) -> Path:
        return self.out_dir / "diagnostics.jsonl"

    def on_train_step(self, model: nn.Module, batch: Any, step: int) -> dict | None:
        """Record if ``step`` is due; returns the record (None if not due)."""
        if step % self.every_n_steps != 0:
            return None
        rec = find_recurrent(model, self.recurrent)
        x = batch[0] if isinstance(batch, (tuple, list)) else batch

        def output_fn(output: Any) -> Tensor | None:
            if self.output_fn is not None:
                return self.output_fn(output)
            return model_prediction(model, rec, output)

        snap = snapshot(
            model, x, lambda output: self.loss_fn(output, batch),
            output_fn if self.influence else None, recurrent=self.recurrent,
            num_projections=self.num_projections,
        )
        flow, inf, gates = snap.flow, snap.influence, snap.gates
        assert gates is not None
        record: dict[str, Any] = {"step": int(step), **snap.to_dict(self.horizon_fraction)}
        if self.plots:
            from rnnkit.diagnostics.plots import plot_gate_saturation, plot_gradient_flow, plot_influence

            tag = f"step{step:07d}"
            record["plots"] = [
                str(plot_gradient_flow(flow, self.out_dir / f"gradient_flow_{tag}.png").name),
                str(plot_gate_saturation(gates, self.out_dir / f"gates_{tag}.png").name),
            ]
            if inf is not None:
                path = plot_influence(inf, self.out_dir / f"influence_{tag}.png", self.horizon_fraction)
                record["plots"].append(path.name)
        append_jsonl_atomic(self.jsonl_path, record)
        return record
