"""LSTM (Hochreiter & Schmidhuber 1997; forget gate Gers et al. 2000), torch.nn.LSTM's cell and options.

Gate order i, f, g, o in ``weight_ih``/``weight_hh``/biases, as torch.nn.

.. math::

    [i, f, g, o] &= W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh} \\\\
    i_t &= \\sigma(i + p_i \\odot c_{t-1}),\\quad f_t = \\sigma(f + p_f \\odot c_{t-1}),\\quad
    g_t = \\tanh(g) \\\\
    c_t &= f_t \\odot c_{t-1} + i_t \\odot g_t \\\\
    o_t &= \\sigma(o + p_o \\odot c_t) \\\\
    h_t &= W_{hr}\\,(o_t \\odot \\tanh(c_t))

Options:

- ``proj_size > 0``: ``h_t`` is projected by ``weight_hr`` (P, H) (Sak et al. 2014, "LSTMP"),
  so ``h`` has size P and ``weight_hh`` is (4H, P). As torch.nn.
- ``peephole``: the ``p_*`` terms above (Gers & Schmidhuber 2000), parameters
  ``weight_peephole_i``, ``weight_peephole_f``, ``weight_peephole_o`` of size H;
  without it those terms are absent.
- ``layer_norm``: layer normalisation placed as in Ba, Kiros & Hinton 2016, "Layer Normalization",
  section 3.1 / eq. (20)-(22): one LN over the whole 4H input projection, one over the whole 4H
  recurrent projection (each before its bias is added), and one on the cell before its tanh:

  .. math::

      [i, f, g, o] &= \\mathrm{LN}_{ih}(W_{ih} x_t) + b_{ih} + \\mathrm{LN}_{hh}(W_{hh} h_{t-1}) + b_{hh} \\\\
      h_t &= W_{hr}\\,(o_t \\odot \\tanh(\\mathrm{LN}_c(c_t)))

  The state ``c_t`` itself stays un-normalised. Parameters ``layer_norm_ih_{weight,bias}`` (4H),
  ``layer_norm_hh_{weight,bias}`` (4H), ``layer_norm_c_{weight,bias}`` (H), initialised to 1 and 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from rnnkit.cells.base import (
    CellSpec,
    Gates,
    Params,
    State,
    chrono_bias,
    layer_norm,
    normed_linear,
    recurrent_input,
)


@dataclass(frozen=True)
class LSTMSpec(CellSpec):
    """LSTM cell with optional projection, peepholes and layer norm."""

    proj_size: int = field(default=0, metadata={"example": 2})  # must stay below hidden_size
    peephole: bool = False
    layer_norm: bool = False

    name: ClassVar[str] = "lstm"
    num_gates: ClassVar[int] = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.proj_size < 0:
            raise ValueError(
                "proj_size should be a positive integer or zero to disable projections"
            )
        if self.proj_size >= self.hidden_size:
            raise ValueError("proj_size has to be smaller than hidden_size")

    @property
    def output_size(self) -> int:
        return self.proj_size if self.proj_size > 0 else self.hidden_size

    def state_sizes(self) -> tuple[int, ...]:
        return (self.output_size, self.hidden_size)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = super().param_shapes()
        H = self.hidden_size
        if self.proj_size > 0:
            shapes["weight_hr"] = (self.proj_size, H)
        if self.peephole:
            for gate in "ifo":
                shapes[f"weight_peephole_{gate}"] = (H,)
        if self.layer_norm:
            for part, size in (("ih", 4 * H), ("hh", 4 * H), ("c", H)):
                shapes[f"layer_norm_{part}_weight"] = (size,)
                shapes[f"layer_norm_{part}_bias"] = (size,)
        return shapes

    def torch_mode(self) -> str | None:
        return "LSTM"

    def kernel_family(self) -> str | None:
        return "lstm"

    def unsupported_by_torch(self) -> str | None:
        if self.layer_norm:
            return "layer_norm is not supported by torch's LSTM kernels"
        if self.peephole:
            return "peephole is not supported by torch's LSTM kernels"
        return None

    # ---- init ---------------------------------------------------------------------------
    def _reset_extras(self, params: Params) -> None:
        for name, p in params.items():
            if name.startswith("layer_norm_"):
                p.fill_(1.0 if name.endswith("_weight") else 0.0)

    def _gate_bias(self, params: Params, gate: int) -> list[Tensor]:
        H = self.hidden_size
        return [params[n][gate * H : (gate + 1) * H] for n in ("bias_ih", "bias_hh") if n in params]

    def _chrono_init(self, params: Params, tmax: float) -> None:
        if not self.bias:
            raise ValueError("init='chrono' sets gate biases; it needs bias=True")
        b_f = chrono_bias(self.hidden_size, tmax, params["bias_ih"])
        (fi, fh), (ii, ih) = self._gate_bias(params, 1), self._gate_bias(params, 0)
        fi.copy_(b_f)
        ii.copy_(-b_f)
        fh.zero_()
        ih.zero_()

    def _set_forget_bias(self, params: Params, value: float) -> None:
        if not self.bias:
            raise ValueError("forget_bias sets a gate bias; it needs bias=True")
        fi, fh = self._gate_bias(params, 1)
        fi.fill_(value)
        fh.zero_()

    # ---- math ---------------------------------------------------------------------------
    def project_input(self, params: Params, x: Tensor) -> Tensor:
        return normed_linear(x, params, "ih", self.layer_norm)

    def gate_kinds(self) -> dict[str, str]:
        return {"i": "sigmoid", "f": "sigmoid", "g": "tanh", "o": "sigmoid", "tanh_c": "tanh"}

    def recurrent_blocks(self) -> tuple[str, ...]:
        return ("i", "f", "g", "o")

    def gates(
        self, params: Params, gx_t: Tensor, state: State, recurrent_mask: Tensor | None = None
    ) -> Gates:
        h, c = state
        gh = normed_linear(recurrent_input(h, recurrent_mask), params, "hh", self.layer_norm)
        i, f, g, o = (gx_t + gh).chunk(4, dim=-1)
        if self.peephole:
            i = i + params["weight_peephole_i"] * c
            f = f + params["weight_peephole_f"] * c
        i, f, g = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g)
        c_new = f * c + i * g
        if self.peephole:
            o = o + params["weight_peephole_o"] * c_new
        c_out = layer_norm(c_new, params, "layer_norm_c") if self.layer_norm else c_new
        return {"i": i, "f": f, "g": g, "o": torch.sigmoid(o), "tanh_c": torch.tanh(c_out), "c": c_new}

    def state_from_gates(self, params: Params, gates: Gates, state: State) -> State:
        h_new = gates["o"] * gates["tanh_c"]
        if self.proj_size > 0:
            h_new = torch.nn.functional.linear(h_new, params["weight_hr"])
        return (h_new, gates["c"])
