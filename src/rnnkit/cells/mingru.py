"""minGRU (Feng et al. 2024, "Were RNNs all we needed?"): a GRU whose gates read only ``x_t``.

Gate order z, h~ in ``weight_ih`` (2H, I) / ``bias_ih`` (2H); there is no ``weight_hh``.

.. math::

    z_t &= \\sigma(W_{iz} x_t + b_{iz}) \\\\
    \\tilde h_t &= g(W_{ih} x_t + b_{ih}) \\\\
    h_t &= (1 - z_t) \\odot h_{t-1} + z_t \\odot \\tilde h_t

with ``g(x) = x + 0.5`` for ``x >= 0`` and ``sigmoid(x)`` otherwise (the paper's log-space version:
``g`` keeps ``h~_t > 0`` so that ``log h~_t`` exists; it is continuous, increasing and has slope 1 for
``x >= 0``). ``activation="identity"`` gives the paper's plain version, ``h~_t = W_{ih} x_t + b_{ih}``.

Because the gates do not depend on ``h_{t-1}``, the recurrence is linear in ``h``:
``h_t = a_t * h_{t-1} + b_t`` with ``a_t = 1 - z_t`` (computed as ``sigmoid(-.)``, exact near
saturation) and ``b_t = z_t * h~_t``; :meth:`MinGRUSpec.scan_coefficients` gives ``(a, b)`` for all
steps at once, which is what the ``scan`` executor runs in parallel in time.

Initialisation: torch's U(+-1/sqrt(H)). ``init="chrono"``: ``1 - z_t`` is the keep gate, so
``b_z = -log(U[1, T_max - 1])`` (Tallec & Ollivier 2018). ``init="orthogonal"`` concerns ``W_hh``,
which this cell does not have (an error). Recurrent dropout and weight drop act on ``W_hh`` and do not
apply either; zoneout does (it stays a linear recurrence).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from rnnkit.cells.base import CellSpec, Gates, InitOptions, Params, State, chrono_bias

ACTIVATIONS = ("g", "identity")


def g(x: Tensor) -> Tensor:
    """The paper's positive activation: ``x + 0.5`` for ``x >= 0``, ``sigmoid(x)`` otherwise."""
    return torch.where(x >= 0, x + 0.5, torch.sigmoid(x))


@dataclass(frozen=True)
class MinimalCell(CellSpec):
    """What minGRU and minLSTM share: input-only gates, state ``(h,)``, no ``W_hh``, the candidate's
    ``activation`` ("g": the paper's positive g; "identity")."""

    activation: str = field(default="g", metadata={"choices": ACTIVATIONS})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {', '.join(map(repr, ACTIVATIONS))}, got {self.activation!r}"
            )

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes: dict[str, tuple[int, ...]] = {
            "weight_ih": (self.num_gates * self.hidden_size, self.input_size)
        }
        if self.bias:
            shapes["bias_ih"] = (self.num_gates * self.hidden_size,)
        return shapes

    def kernel_family(self) -> str | None:
        return self.name  # the scan kernels: "mingru", "minlstm"

    def unsupported_by_torch(self) -> str | None:
        return f"torch has no kernel for the {self.name!r} cell"

    @torch.no_grad()
    def reset_parameters(self, params: Params, init: InitOptions | None = None) -> None:
        init = init if init is not None else InitOptions()
        if init.scheme == "orthogonal":
            raise ValueError(
                f"init='orthogonal' makes weight_hh orthogonal; the {self.name!r} cell has no weight_hh"
            )
        super().reset_parameters(params, init)

    def candidate(self, pre: Tensor) -> Tensor:
        return g(pre) if self.activation == "g" else pre

    def scan_coefficients(self, gx: Tensor) -> tuple[Tensor, Tensor]:
        """``(a, b)`` with ``h_t = a_t * h_{t-1} + b_t``, for any leading shape of ``gx``."""
        raise NotImplementedError

    def recurrent_blocks(self) -> tuple[str, ...]:
        return ()  # no weight_hh: the recurrence is elementwise

    def gates(
        self, params: Params, gx_t: Tensor, state: State, recurrent_mask: Tensor | None = None
    ) -> Gates:
        if recurrent_mask is not None:
            raise ValueError(f"recurrent dropout acts on weight_hh; the {self.name!r} cell has none")
        a, b = self.scan_coefficients(gx_t)
        return {**self.named_gate(a), "a": a, "b": b}

    def named_gate(self, a: Tensor) -> Gates:
        """The family's gate, from the decay ``a`` of ``h_t = a_t h_{t-1} + b_t``."""
        raise NotImplementedError

    def state_from_gates(self, params: Params, gates: Gates, state: State) -> State:
        return (gates["a"] * state[0] + gates["b"],)


@dataclass(frozen=True)
class MinGRUSpec(MinimalCell):
    """minGRU cell (see the module docstring for the equations)."""

    name: ClassVar[str] = "mingru"
    num_gates: ClassVar[int] = 2

    def _chrono_init(self, params: Params, tmax: float) -> None:
        if not self.bias:
            raise ValueError("init='chrono' sets gate biases; it needs bias=True")
        H = self.hidden_size
        params["bias_ih"][:H].copy_(-chrono_bias(H, tmax, params["bias_ih"]))

    def gate_kinds(self) -> dict[str, str]:
        return {"z": "sigmoid"}

    def named_gate(self, a: Tensor) -> Gates:
        return {"z": 1 - a}  # h_t = (1 - z) h_{t-1} + z g(h~)

    def scan_coefficients(self, gx: Tensor) -> tuple[Tensor, Tensor]:
        pz, ph = gx.chunk(2, dim=-1)
        return torch.sigmoid(-pz), torch.sigmoid(pz) * self.candidate(ph)

    def kernel_family(self) -> str | None:
        return "mingru"  # declared by the class itself: the executors trust no inherited family
