"""Gradient flow through time: ``|dL/ds_k|`` for every step, layer and direction.

The norm is the Frobenius norm of the (batch, units) gradient of the loss with respect to the state
at boundary ``k`` (k = 0..T, see :mod:`rnnkit.diagnostics.trace` for the indexing: for the forward
direction boundary 0 is the initial state ``h_0`` and boundary T the last state ``h_T``).

A vanishing gradient shows as norms that fall geometrically from the loss's end of the sequence
towards its start (``ratio`` far below 1); an exploding one as norms that grow. For the LSTM both
``h`` and ``c`` are reported; ``h`` is the primary one (``dL/dh_k`` with ``c_k`` held fixed, the
quantity backpropagation through time carries in ``h``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rnnkit.diagnostics.trace import eval_mode, find_recurrent, trace


@dataclass
class GradientFlow:
    """``norms[component]``: float64 tensor (layers, directions, T+1) of ``|dL/ds_k|``."""

    cell: str
    norms: dict[str, Tensor]
    loss: float

    @property
    def num_layers(self) -> int:
        return self.norms["h"].shape[0]

    @property
    def num_directions(self) -> int:
        return self.norms["h"].shape[1]

    @property
    def seq_len(self) -> int:
        return self.norms["h"].shape[2] - 1

    def ratio(self, layer: int = 0, direction: int = 0, component: str = "h") -> float:
        """``|dL/d(first state)| / |dL/d(last state)|`` in the order the direction runs.

        Forward: ``|dL/dh_0| / |dL/dh_T|``; reverse: boundary T (its initial state) over boundary 0.
        How much of the loss's gradient survives the trip back through all T steps (0 if it underflowed).
        """
        n = self.norms[component][layer, direction]
        first, last = (n[0], n[-1]) if direction == 0 else (n[-1], n[0])
        return float(first / last) if last > 0 else float("inf") if first > 0 else float("nan")

    def to_dict(self) -> dict:
        return {
            "cell": self.cell,
            "loss": self.loss,
            "T": self.seq_len,
            "norms": {k: v.tolist() for k, v in self.norms.items()},
            "ratio": [
                [self.ratio(layer, d) for d in range(self.num_directions)] for layer in range(self.num_layers)
            ],
        }


def gradient_norms(grads: dict[tuple[int, int], tuple[Tensor, ...]], names: tuple[str, ...]) -> dict[str, Tensor]:
    """Per-boundary Frobenius norms, stacked as (layers, directions, T+1) per state component."""
    L = 1 + max(k[0] for k in grads)
    D = 1 + max(k[1] for k in grads)
    out = {}
    for c, name in enumerate(names):
        rows = [
            torch.stack([grads[(layer, d)][c].double().flatten(1).norm(dim=1) for d in range(D)])
            for layer in range(L)
        ]
        out[name] = torch.stack(rows).cpu()
    return out


def default_loss(model: nn.Module, output) -> Tensor:
    """The sum of the last step's output of a Recurrent (time axis per ``batch_first``); for other
    models the sum of the output."""
    y = output[0] if isinstance(output, tuple) else output
    if not isinstance(y, Tensor):
        raise TypeError("the model's output is not a tensor; pass loss_fn")
    rec = model if hasattr(model, "batch_first") and hasattr(model, "cells") else None
    if rec is None:
        return y.sum()
    if y.dim() == 2:  # unbatched (T, H)
        return y[-1].sum()
    return (y[:, -1] if rec.batch_first else y[-1]).sum()


def gradient_flow(
    model: nn.Module,
    x: Tensor,
    loss_fn: Callable[[object], Tensor] | None = None,
    *,
    recurrent: str | None = None,
    check: bool = True,
    **forward_kwargs,
) -> GradientFlow:
    """Run ``loss = loss_fn(model(x, **forward_kwargs))`` traced and return ``|dL/ds_k|`` everywhere.

    ``model`` is a :class:`~rnnkit.Recurrent` or any module holding one (``recurrent`` names it if
    there are several). ``loss_fn`` defaults to :func:`default_loss` (sum of the last output).
    Parameters' ``.grad`` are not touched.
    """
    rec = find_recurrent(model, recurrent)
    with eval_mode(model), torch.enable_grad(), trace(model, recurrent=recurrent, check=check) as tape:
        output = model(x, **forward_kwargs)
        loss = loss_fn(output) if loss_fn is not None else default_loss(model, output)
        grads = tape.state_gradients(loss)
    return GradientFlow(rec.cell_name, gradient_norms(grads, tape.state_names), float(loss.detach()))
