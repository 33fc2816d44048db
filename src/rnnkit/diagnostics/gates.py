"""Gate statistics: how many sigmoid/tanh units sit in their flat, gradient-killing tails.

A unit is **saturated** when its activation lies where the nonlinearity's derivative is small:

- sigmoid gates (LSTM ``i``, ``f``, ``o``; GRU ``r``, ``z``): value < 0.05 ("closed", counted as
  ``low``) or > 0.95 ("open", counted as ``high``); there sigma' = s(1 - s) < 0.0475, under a fifth
  of its peak 0.25,
- tanh units (LSTM ``g`` and ``tanh(c)``, GRU ``n``, Elman-tanh ``h``): |value| > 0.95; there
  tanh' = 1 - v^2 < 0.0975, under a tenth of its peak 1,
- relu units (Elman-relu and modReLU ``h``): value == 0 (no gradient passes), counted as ``low``.

Fractions are over every (valid) time step, sequence and unit of one layer and direction. A high
forget-gate ``high`` fraction is wanted (memory); a high ``low`` fraction on ``i`` or ``f`` and a high
tanh saturation are the usual signs of a network that stopped learning.

Gate activations come from the cell's own :meth:`~rnnkit.cells.CellSpec.gates` (the function its
``step`` is built from, so they cannot drift from the math); the cell's ``gate_kinds()`` says which
entries are gates and of what nonlinearity.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from rnnkit.cells.base import CellSpec, Params, State

SIGMOID_LOW = 0.05
SIGMOID_HIGH = 0.95
TANH_SATURATION = 0.95
HISTOGRAM_BINS = 40

#: gate name -> kind ("sigmoid", "tanh", "relu")
GateKinds = dict[str, str]


def gate_kinds(spec: CellSpec) -> GateKinds:
    return spec.gate_kinds()


def gate_activations(spec: CellSpec, params: Params, gx_t: Tensor, state: State) -> dict[str, Tensor]:
    """Every gate's activation for one step of ``spec`` (B, n each)."""
    kinds = spec.gate_kinds()
    return {name: v for name, v in spec.gates(params, gx_t, state).items() if name in kinds}


# ---- statistics -----------------------------------------------------------------------------------
def histogram_range(kind: str) -> tuple[float, float]:
    return (-1.0, 1.0) if kind == "tanh" else (0.0, 1.0)


@dataclass
class GateSummary:
    """Saturation of one gate of one layer and direction."""

    kind: str
    low: float  # fraction below SIGMOID_LOW (sigmoid), < -TANH_SATURATION (tanh), == 0 (relu)
    high: float  # fraction above SIGMOID_HIGH (sigmoid), > TANH_SATURATION (tanh); 0 for relu
    mean: float
    histogram: list[int] = field(default_factory=list)  # HISTOGRAM_BINS counts over histogram_range

    @property
    def saturated(self) -> float:
        return self.low + self.high


def summarize_gate(kind: str, values: Tensor) -> GateSummary:
    """Saturation fractions and a histogram of ``values`` (any shape) of a gate of ``kind``."""
    v = values.detach().double().reshape(-1)
    n = max(v.numel(), 1)
    if kind == "sigmoid":
        low, high = (v < SIGMOID_LOW).sum(), (v > SIGMOID_HIGH).sum()
    elif kind == "tanh":
        low, high = (v < -TANH_SATURATION).sum(), (v > TANH_SATURATION).sum()
    elif kind == "relu":
        low, high = (v <= 0).sum(), torch.zeros(())
    else:
        raise ValueError(f"unknown gate kind {kind!r} (sigmoid, tanh or relu)")
    lo, hi = histogram_range(kind)
    hist = torch.histc(v.clamp(lo, hi), bins=HISTOGRAM_BINS, min=lo, max=hi) if v.numel() else None
    return GateSummary(
        kind=kind,
        low=float(low) / n,
        high=float(high) / n,
        mean=float(v.mean()) if v.numel() else float("nan"),
        histogram=[int(c) for c in hist.tolist()] if hist is not None else [0] * HISTOGRAM_BINS,
    )


@dataclass
class GateStats:
    """``layers[layer][direction][gate] -> GateSummary``."""

    cell: str
    layers: list[list[dict[str, GateSummary]]]

    def table(self) -> list[dict]:
        """One row per (layer, direction, gate): the saturated fractions."""
        rows = []
        for layer, per_dir in enumerate(self.layers):
            for direction, gates in enumerate(per_dir):
                for gate, s in gates.items():
                    rows.append({
                        "layer": layer, "direction": direction, "gate": gate, "kind": s.kind,
                        "low": s.low, "high": s.high, "saturated": s.saturated, "mean": s.mean,
                    })
        return rows

    def to_dict(self) -> dict:
        return {
            "cell": self.cell,
            "thresholds": {"sigmoid_low": SIGMOID_LOW, "sigmoid_high": SIGMOID_HIGH, "tanh": TANH_SATURATION},
            "layers": [
                [{g: vars(s) for g, s in gates.items()} for gates in per_dir] for per_dir in self.layers
            ],
        }
