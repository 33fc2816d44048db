"""``gate_statistics(model, x)``: run a traced forward pass and summarise gate saturation
(thresholds and definitions in :mod:`rnnkit.diagnostics.gates`)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnkit.diagnostics.gates import GateStats
from rnnkit.diagnostics.trace import eval_mode, trace


def gate_statistics(
    model: nn.Module, x: Tensor, *, recurrent: str | None = None, check: bool = True, **forward_kwargs
) -> GateStats:
    """Fraction of saturated units per gate, layer and direction over a forward pass on ``x``."""
    with eval_mode(model), torch.no_grad(), trace(model, recurrent=recurrent, record_gates=True, check=check) as tape:
        model(x, **forward_kwargs)
    return tape.gate_statistics()
