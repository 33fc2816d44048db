"""The spectrum of each recurrent weight matrix, per gate block.

For every layer, direction and gate block ``W`` of ``weight_hh`` (H x H; LSTM order i, f, g, o, GRU
r, z, n, Elman one block): the largest singular values and the spectral radius (largest |eigenvalue|).
The linearised recurrence ``h_t ~ W h_{t-1}`` shrinks perturbations when the radius is below 1 and
grows them when it is above 1 (Pascanu et al. 2013, "On the difficulty of training recurrent neural
networks": a largest singular value below 1/gamma, with gamma the bound on the activation's
derivative, is sufficient for vanishing gradients). For a projected LSTM the block is H x P; the
radius is then that of ``W @ weight_hr`` (H x H), the map from one step's cell output to the next
step's gate pre-activation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rnnkit.diagnostics.trace import find_recurrent

GATE_NAMES = {"lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n")}


@dataclass
class BlockSpectrum:
    layer: int
    direction: int
    gate: str
    singular_values: list[float]  # the largest ones, descending
    spectral_radius: float


def gate_names(cell_name: str, num_gates: int) -> tuple[str, ...]:
    names = GATE_NAMES.get(cell_name)
    if names is not None and len(names) == num_gates:
        return names
    return ("h",) if num_gates == 1 else tuple(f"gate{i}" for i in range(num_gates))


@torch.no_grad()
def recurrent_spectrum(model: nn.Module, k: int = 3, *, recurrent: str | None = None) -> list[BlockSpectrum]:
    """Top-``k`` singular values and spectral radius of every gate block of every ``weight_hh``
    (none for cells without recurrent weights, e.g. minGRU: their recurrence is elementwise)."""
    rec = find_recurrent(model, recurrent)
    out = []
    for layer, spec in enumerate(rec.cells):
        names = gate_names(rec.cell_name, spec.num_gates)
        for direction in range(rec.num_directions):
            params = rec.layer_params(layer, direction)
            if "weight_hh" not in params:
                continue
            blocks = params["weight_hh"].detach().double().cpu().chunk(spec.num_gates, dim=0)
            w_hr = params.get("weight_hr")
            for gate, w in zip(names, blocks, strict=True):
                s = torch.linalg.svdvals(w)
                square = w if w_hr is None else w @ w_hr.detach().double().cpu()
                radius = float(torch.linalg.eigvals(square).abs().max())
                out.append(BlockSpectrum(layer, direction, gate, s[:k].tolist(), radius))
    return out
