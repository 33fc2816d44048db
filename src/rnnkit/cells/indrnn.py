"""IndRNN (Li, Li, Cook, Zhu & Gao 2018, "Independently Recurrent Neural Network (IndRNN): Building A
Longer and Deeper RNN"): every unit recurs only on itself.

.. math::

    h_t = \\phi(W_{ih} x_t + b_{ih} + u \\odot h_{t-1} + b_{hh}),\\qquad \\phi \\in \\{\\mathrm{relu}, \\tanh\\}

``u`` (``weight_hh``, shape ``(H,)``) is a vector, not a matrix: the recurrence is element-wise, so
the gradient through ``T`` steps of unit ``k`` is the product of ``u_k * phi'`` over the steps and is
kept in range by bounding ``|u_k|`` (the paper's constraint ``|u| <= 2**(1/T)`` for a memory of ``T``
steps with relu). With ``recurrent_max`` set, the step uses ``clamp(u, -recurrent_max, recurrent_max)``
(a weight that leaves the box gets no gradient and acts as the bound, the projection of the paper).
Stacking layers mixes the units (each layer's ``W_ih`` is full).

Init (``init="torch"``): ``W_ih`` and the biases as torch.nn.RNN, ``u ~ U(0, 1)`` (the paper's
range for relu; ``U(0, recurrent_max)`` when that is smaller). ``orthogonal`` and ``chrono`` do not
apply to a diagonal recurrence and are refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from rnnkit.cells.base import CellSpec, Gates, InitOptions, Params, State, recurrent_input

NONLINEARITIES = ("relu", "tanh")


@dataclass(frozen=True)
class IndRNNSpec(CellSpec):
    """IndRNN cell: element-wise recurrent weight; ``nonlinearity`` "relu" (the paper's) or "tanh"."""

    nonlinearity: str = field(default="relu", metadata={"choices": NONLINEARITIES})
    recurrent_max: float | None = field(default=None, metadata={"example": 0.9})

    name: ClassVar[str] = "indrnn"
    num_gates: ClassVar[int] = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.nonlinearity not in NONLINEARITIES:
            raise ValueError(f"IndRNN nonlinearity must be 'relu' or 'tanh', got {self.nonlinearity!r}")
        if self.recurrent_max is not None and not (
            isinstance(self.recurrent_max, (int, float)) and math.isfinite(self.recurrent_max)
            and self.recurrent_max > 0
        ):
            raise ValueError(f"recurrent_max must be a positive finite number or None, got {self.recurrent_max!r}")

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        H = self.hidden_size
        shapes: dict[str, tuple[int, ...]] = {"weight_ih": (H, self.input_size), "weight_hh": (H,)}
        if self.bias:
            shapes["bias_ih"] = (H,)
            shapes["bias_hh"] = (H,)
        return shapes

    def kernel_family(self) -> str | None:
        return "indrnn"

    def unsupported_by_torch(self) -> str | None:
        return "torch.nn has no IndRNN"

    @torch.no_grad()
    def reset_parameters(self, params: Params, init: InitOptions | None = None) -> None:
        init = init if init is not None else InitOptions()
        if init.scheme != "torch":
            raise ValueError(f"init={init.scheme!r} does not apply to IndRNN's element-wise recurrence; "
                             "use init='torch' (u ~ U(0, 1))")
        if init.forget_bias is not None:
            super()._set_forget_bias(params, init.forget_bias)  # raises: no forget gate
        bound = 1.0 / math.sqrt(self.hidden_size)
        for name, p in params.items():
            if name != "weight_hh":
                p.uniform_(-bound, bound)
        params["weight_hh"].uniform_(0.0, min(1.0, self.recurrent_max or 1.0))

    def recurrent_weight(self, params: Params) -> Tensor:
        """``u`` as the step uses it (clamped to ``recurrent_max`` if set)."""
        u = params["weight_hh"]
        return u if self.recurrent_max is None else u.clamp(-self.recurrent_max, self.recurrent_max)

    def gate_kinds(self) -> dict[str, str]:
        return {"h": self.nonlinearity}

    def gates(
        self, params: Params, gx_t: Tensor, state: State, recurrent_mask: Tensor | None = None
    ) -> Gates:
        pre = gx_t + self.recurrent_weight(params) * recurrent_input(state[0], recurrent_mask)
        if "bias_hh" in params:
            pre = pre + params["bias_hh"]
        return {"h": torch.relu(pre) if self.nonlinearity == "relu" else torch.tanh(pre)}

    def state_from_gates(self, params: Params, gates: Gates, state: State) -> State:
        return (gates["h"],)
