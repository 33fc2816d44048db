"""The spectrum of each recurrent weight matrix, per gate block.

For every layer, direction and gate block ``W`` of ``weight_hh`` (H x H; the blocks the cell names
in ``recurrent_blocks()``: LSTM i, f, g, o, GRU r, z, n, Elman one block; IndRNN's ``u`` as the
diagonal matrix it is): the largest singular values and the spectral radius (largest |eigenvalue|).
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


@dataclass
class BlockSpectrum:
    layer: int
    direction: int
    gate: str
    singular_values: list[float]  # the largest ones, descending
    spectral_radius: float


@torch.no_grad()
def recurrent_spectrum(model: nn.Module, k: int = 3, *, recurrent: str | None = None) -> list[BlockSpectrum]:
    """Top-``k`` singular values and spectral radius of every gate block of every ``weight_hh``
    (none for cells without recurrent weights, e.g. minGRU: their recurrence is elementwise)."""
    rec = find_recurrent(model, recurrent)
    out = []
    for layer, spec in enumerate(rec.cells):
        names = spec.recurrent_blocks()
        for direction in range(rec.num_directions):
            params = rec.layer_params(layer, direction)
            if not names or "weight_hh" not in params:
                continue
            weight_hh = params["weight_hh"].detach().double().cpu()
            if weight_hh.dim() == 1:  # an element-wise recurrence (IndRNN): W_hh = diag(u)
                s = weight_hh.abs().sort(descending=True).values
                out.append(BlockSpectrum(layer, direction, names[0], s[:k].tolist(), float(s[0])))
                continue
            blocks = weight_hh.chunk(len(names), dim=0)
            w_hr = params.get("weight_hr")
            for gate, w in zip(names, blocks, strict=True):
                s = torch.linalg.svdvals(w)
                square = w if w_hr is None else w @ w_hr.detach().double().cpu()
                radius = float(torch.linalg.eigvals(square).abs().max())
                out.append(BlockSpectrum(layer, direction, gate, s[:k].tolist(), radius))
    return out
