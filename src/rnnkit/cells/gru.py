"""GRU (Cho et al. 2014), with torch.nn.GRU's formula: ``b_hn`` sits inside the reset gate.

Gate order r, z, n in ``weight_ih``/``weight_hh``/biases, as torch.nn.

.. math::

    r_t &= \\sigma(W_{ir} x_t + b_{ir} + W_{hr} h_{t-1} + b_{hr}) \\\\
    z_t &= \\sigma(W_{iz} x_t + b_{iz} + W_{hz} h_{t-1} + b_{hz}) \\\\
    n_t &= \\tanh(W_{in} x_t + b_{in} + r_t \\odot (W_{hn} h_{t-1} + b_{hn})) \\\\
    h_t &= (1 - z_t) \\odot n_t + z_t \\odot h_{t-1}

Option ``layer_norm``: one LN over the whole 3H input projection and one over the whole 3H
recurrent projection, each before its bias (the placement of Ba et al. 2016 applied to the GRU):
``gx = LN_ih(W_ih x) + b_ih``, ``gh = LN_hh(W_hh h) + b_hh``, then the equations above with
``gh_n`` inside ``r * (...)``. Parameters ``layer_norm_{ih,hh}_{weight,bias}`` (3H), init 1 and 0.

``init="chrono"``: ``z_t`` is the keep gate, so b_z ~ log(U[1, T_max - 1]) (Tallec & Ollivier 2018).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from rnnkit.cells.base import (
    CellSpec,
    Gates,
    Params,
    State,
    chrono_bias,
    normed_linear,
    recurrent_input,
)


@dataclass(frozen=True)
class GRUSpec(CellSpec):
    """GRU cell with optional layer norm."""

    layer_norm: bool = False

    name: ClassVar[str] = "gru"
    num_gates: ClassVar[int] = 3

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = super().param_shapes()
        if self.layer_norm:
            for part in ("ih", "hh"):
                shapes[f"layer_norm_{part}_weight"] = (3 * self.hidden_size,)
                shapes[f"layer_norm_{part}_bias"] = (3 * self.hidden_size,)
        return shapes

    def torch_mode(self) -> str | None:
        return "GRU"

    def kernel_family(self) -> str | None:
        return "gru"

    def unsupported_by_torch(self) -> str | None:
        return "layer_norm is not supported by torch's GRU kernels" if self.layer_norm else None

    def _reset_extras(self, params: Params) -> None:
        for name, p in params.items():
            if name.startswith("layer_norm_"):
                p.fill_(1.0 if name.endswith("_weight") else 0.0)

    def _chrono_init(self, params: Params, tmax: float) -> None:
        if not self.bias:
            raise ValueError("init='chrono' sets gate biases; it needs bias=True")
        H = self.hidden_size
        params["bias_ih"][H : 2 * H].copy_(chrono_bias(H, tmax, params["bias_ih"]))
        params["bias_hh"][H : 2 * H].zero_()

    def project_input(self, params: Params, x: Tensor) -> Tensor:
        return normed_linear(x, params, "ih", self.layer_norm)

    def gate_kinds(self) -> dict[str, str]:
        return {"r": "sigmoid", "z": "sigmoid", "n": "tanh"}

    def recurrent_blocks(self) -> tuple[str, ...]:
        return ("r", "z", "n")

    def gates(
        self, params: Params, gx_t: Tensor, state: State, recurrent_mask: Tensor | None = None
    ) -> Gates:
        gh = normed_linear(recurrent_input(state[0], recurrent_mask), params, "hh", self.layer_norm)
        xr, xz, xn = gx_t.chunk(3, dim=-1)
        hr, hz, hn = gh.chunk(3, dim=-1)
        r = torch.sigmoid(xr + hr)
        return {"r": r, "z": torch.sigmoid(xz + hz), "n": torch.tanh(xn + r * hn)}

    def state_from_gates(self, params: Params, gates: Gates, state: State) -> State:
        z = gates["z"]
        return ((1 - z) * gates["n"] + z * state[0],)
