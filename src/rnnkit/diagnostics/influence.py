"""Influence of inputs: ``|dy_T/dx_t|`` over t, and the memory horizon it implies.

``y_T`` is the network's output at the end of the sequence (by default the recurrent layer's last
output; pass ``output_fn`` to use a head's prediction). For each sequence the Jacobian
``dy_T/dx_t`` (K outputs x I inputs) is reduced to its Frobenius norm; the curve is the mean over the
batch, indexed by lag ``T-1-t`` (lag 0 is the last input).

**Memory horizon** (:meth:`Influence.horizon`, fraction ``1e-2`` by default): the smallest lag ``k``
from which on the influence stays below ``fraction x`` its maximum over all lags, i.e. one more than
the largest lag whose influence is still at least that fraction of the peak. Inputs further back
than the horizon move the output by less than 1% of what the most influential input does. If even
the oldest input is above the threshold the horizon is *at least* T and ``reached`` is false.

The exact Jacobian norm costs K backward passes (one per output unit); ``num_projections=m`` instead
estimates it from m random projections (``E|v^T J|^2 = |J|_F^2`` for v ~ N(0, I)).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from rnnkit.diagnostics.trace import eval_mode, find_recurrent, trace
from rnnkit.layers.recurrent import Recurrent

DEFAULT_FRACTION = 1e-2


@dataclass
class Influence:
    """``by_lag[k]``: mean over the batch of ``|dy_T/dx_{T-1-k}|_F`` (float64, length T)."""

    cell: str
    by_lag: Tensor

    @property
    def seq_len(self) -> int:
        return self.by_lag.numel()

    def horizon(self, fraction: float = DEFAULT_FRACTION) -> tuple[int, bool]:
        """``(lag, reached)``: see the module docstring."""
        peak = float(self.by_lag.max()) if self.seq_len else 0.0
        if peak <= 0:
            return 0, True
        above = torch.nonzero(self.by_lag >= fraction * peak).flatten()
        lag = int(above.max()) + 1
        return lag, lag < self.seq_len

    def to_dict(self, fraction: float = DEFAULT_FRACTION) -> dict:
        lag, reached = self.horizon(fraction)
        return {
            "cell": self.cell, "by_lag": self.by_lag.tolist(), "horizon_fraction": fraction,
            "horizon": lag, "horizon_reached": reached,
        }


def jacobian_norms(tape, y: Tensor, num_projections: int | None = None, generator=None) -> Tensor:
    """Per (t, b) Frobenius norm of ``dy[b]/dx[t, b]`` for a traced call; ``y`` is (B, K) or (B,)."""
    y = y.reshape(y.shape[0], -1)
    sq = None
    if num_projections is None:
        for k in range(y.shape[1]):
            g = tape.input_gradient(y[:, k].sum()).double().pow(2).sum(-1)
            sq = g if sq is None else sq + g
    else:
        for _ in range(num_projections):
            v = torch.randn(y.shape, generator=generator, dtype=y.dtype).to(y.device)
            g = tape.input_gradient((y * v).sum()).double().pow(2).sum(-1)
            sq = g if sq is None else sq + g
        sq = sq / num_projections
    assert sq is not None
    return sq.sqrt()


def model_prediction(model: nn.Module, rec: Recurrent, output: Any) -> Tensor | None:
    """The default ``y_T``: a Recurrent's last output (time axis per ``batch_first``; an unbatched
    output is one sequence), or a model's output if it is (B,) or (B, K); else None."""
    out = output[0] if isinstance(output, tuple) else output
    if not isinstance(out, Tensor):
        return None
    if model is rec:
        if out.dim() == 2:
            return out[-1:]
        return out[:, -1] if rec.batch_first else out[-1]
    return out if out.dim() in (1, 2) else None


def input_influence(
    model: nn.Module,
    x: Tensor,
    output_fn: Callable[[object], Tensor] | None = None,
    *,
    recurrent: str | None = None,
    num_projections: int | None = None,
    check: bool = True,
    **forward_kwargs,
) -> Influence:
    """``|dy_T/dx_t|`` of the traced recurrent layer's input ``x_t``.

    ``output_fn(model_output) -> (B, K)`` gives ``y_T``; the default is the last step's output of a
    Recurrent (time-major ``output[-1]``, ``output[:, -1]`` with batch_first). ``x`` is time-major
    for the recurrent layer unless it is batch_first.
    """
    rec = find_recurrent(model, recurrent)
    with eval_mode(model), torch.enable_grad(), trace(model, recurrent=recurrent, check=check) as tape:
        output = model(x, **forward_kwargs)
        y = output_fn(output) if output_fn is not None else model_prediction(model, rec, output)
        if y is None:
            raise ValueError("the model's output is not (B,) or (B, K); pass output_fn")
        norms = jacobian_norms(tape, y, num_projections)
    return Influence(rec.cell_name, norms.mean(dim=1).flip(0).cpu())
