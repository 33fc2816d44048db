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

Gate activations are recomputed from the cell's inputs by a per-family function registered here
(:func:`register_gates`); each mirrors its cell's ``step`` (tests check that the gates rebuild the
step's new state).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from rnnkit.cells.base import CellSpec, Params, State, layer_norm, normed_linear

SIGMOID_LOW = 0.05
SIGMOID_HIGH = 0.95
TANH_SATURATION = 0.95
HISTOGRAM_BINS = 40

#: gate name -> kind ("sigmoid", "tanh", "relu")
GateKinds = dict[str, str]
GateFn = Callable[[CellSpec, Params, Tensor, State], dict[str, Tensor]]

_GATE_FNS: dict[str, tuple[GateKinds, GateFn]] = {}


def register_gates(cell_name: str, kinds: GateKinds, fn: GateFn) -> None:
    """Declare the gates of a cell family: ``fn(spec, params, gx_t, state_prev) -> {gate: (B, n)}``."""
    _GATE_FNS[cell_name] = (dict(kinds), fn)


def gate_kinds(spec: CellSpec) -> GateKinds:
    return dict(_lookup(spec)[0])


def gate_activations(spec: CellSpec, params: Params, gx_t: Tensor, state: State) -> dict[str, Tensor]:
    """Every gate's activation for one step of ``spec`` (B, n each)."""
    return _lookup(spec)[1](spec, params, gx_t, state)


def has_gates(spec: CellSpec) -> bool:
    return spec.name in _GATE_FNS


def _lookup(spec: CellSpec) -> tuple[GateKinds, GateFn]:
    if spec.name not in _GATE_FNS:
        raise ValueError(
            f"no gate definition for the {spec.name!r} cell; declare one with "
            "rnnkit.diagnostics.register_gates(name, kinds, fn)"
        )
    return _GATE_FNS[spec.name]


# ---- the families ---------------------------------------------------------------------------------
def _recurrent_part(spec: CellSpec, params: Params, h: Tensor) -> Tensor:
    """``W_hh h + b_hh`` as the cell computes it (layer norm included)."""
    return normed_linear(h, params, "hh", getattr(spec, "layer_norm", False))


def _elman_gates(spec: CellSpec, params: Params, gx_t: Tensor, state: State) -> dict[str, Tensor]:
    return {"h": spec.step(params, gx_t, state)[0]}  # the cell's own nonlinearity


def _lstm_gates(spec: CellSpec, params: Params, gx_t: Tensor, state: State) -> dict[str, Tensor]:
    h, c = state
    i, f, g, o = (gx_t + _recurrent_part(spec, params, h)).chunk(4, dim=-1)
    if spec.peephole:  # type: ignore[attr-defined]
        i = i + params["weight_peephole_i"] * c
        f = f + params["weight_peephole_f"] * c
    i, f, g = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g)
    c_new = f * c + i * g
    if spec.peephole:  # type: ignore[attr-defined]
        o = o + params["weight_peephole_o"] * c_new
    c_out = layer_norm(c_new, params, "layer_norm_c") if spec.layer_norm else c_new  # type: ignore[attr-defined]
    return {"i": i, "f": f, "g": g, "o": torch.sigmoid(o), "tanh_c": torch.tanh(c_out)}


def _gru_gates(spec: CellSpec, params: Params, gx_t: Tensor, state: State) -> dict[str, Tensor]:
    xr, xz, xn = gx_t.chunk(3, dim=-1)
    hr, hz, hn = _recurrent_part(spec, params, state[0]).chunk(3, dim=-1)
    r = torch.sigmoid(xr + hr)
    return {"r": r, "z": torch.sigmoid(xz + hz), "n": torch.tanh(xn + r * hn)}


def _mingru_gates(spec: CellSpec, params: Params, gx_t: Tensor, state: State) -> dict[str, Tensor]:
    a, _ = spec.scan_coefficients(gx_t)  # type: ignore[attr-defined]
    return {"z": 1 - a}  # h_t = (1 - z) h_{t-1} + z g(h~)


def _minlstm_gates(spec: CellSpec, params: Params, gx_t: Tensor, state: State) -> dict[str, Tensor]:
    a, _ = spec.scan_coefficients(gx_t)  # type: ignore[attr-defined]
    return {"f": a}  # the normalised forget gate f' = f / (f + i); i' = 1 - f'


register_gates("rnn_tanh", {"h": "tanh"}, _elman_gates)
register_gates("rnn_relu", {"h": "relu"}, _elman_gates)
register_gates("rnn_modrelu", {"h": "relu"}, _elman_gates)  # h == 0: a silenced unit, as relu's
register_gates("lstm", {"i": "sigmoid", "f": "sigmoid", "g": "tanh", "o": "sigmoid", "tanh_c": "tanh"}, _lstm_gates)
register_gates("gru", {"r": "sigmoid", "z": "sigmoid", "n": "tanh"}, _gru_gates)
register_gates("mingru", {"z": "sigmoid"}, _mingru_gates)
register_gates("minlstm", {"f": "sigmoid"}, _minlstm_gates)


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
