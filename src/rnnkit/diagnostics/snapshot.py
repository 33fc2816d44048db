"""``snapshot``: every diagnostic of a model on one batch, from one traced forward pass.

Shared by :class:`~rnnkit.diagnostics.recorder.GradientFlowRecorder` and the demo: gradient flow
(for ``loss_fn``), input influence (for ``output_fn``), gate saturation and the recurrent spectrum.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from rnnkit.diagnostics.gates import GateStats
from rnnkit.diagnostics.gradient_flow import GradientFlow, gradient_norms
from rnnkit.diagnostics.influence import DEFAULT_FRACTION, Influence, jacobian_norms
from rnnkit.diagnostics.spectrum import BlockSpectrum, recurrent_spectrum
from rnnkit.diagnostics.trace import eval_mode, find_recurrent, trace


@dataclass
class Snapshot:
    flow: GradientFlow
    influence: Influence | None
    gates: GateStats | None
    spectrum: list[BlockSpectrum]

    def to_dict(self, fraction: float = DEFAULT_FRACTION) -> dict[str, Any]:
        return {
            "loss": self.flow.loss,
            "gradient_flow": self.flow.to_dict(),
            "influence": None if self.influence is None else self.influence.to_dict(fraction),
            "gates": None if self.gates is None else self.gates.table(),
            "spectrum": [asdict(b) for b in self.spectrum],
        }


def snapshot(
    model: nn.Module,
    x: Tensor,
    loss_fn: Callable[[Any], Tensor],
    output_fn: Callable[[Any], Tensor] | None = None,
    *,
    recurrent: str | None = None,
    gates: bool = True,
    num_projections: int | None = None,
    check: bool = True,
) -> Snapshot:
    """Diagnose ``model`` on ``x``: ``loss_fn(model(x))`` for the gradient flow, ``output_fn(model(x))``
    ((B,) or (B, K)) as ``y_T`` for the influence (skipped if it or its result is None)."""
    rec = find_recurrent(model, recurrent)
    with eval_mode(model), torch.enable_grad(), trace(
        model, recurrent=recurrent, record_gates=gates, check=check
    ) as tape:
        output = model(x)
        loss = loss_fn(output)
        flow = GradientFlow(rec.cell_name, gradient_norms(tape.state_gradients(loss), tape.state_names),
                            float(loss.detach()))
        influence = None
        y_last = output_fn(output) if output_fn is not None else None
        if y_last is not None:  # None: an output with no (B,) / (B, K) reading; no influence
            norms = jacobian_norms(tape, y_last, num_projections)
            influence = Influence(rec.cell_name, norms.mean(dim=1).flip(0).cpu())
    stats = tape.gate_statistics() if gates else None
    return Snapshot(flow, influence, stats, recurrent_spectrum(model, recurrent=recurrent))
