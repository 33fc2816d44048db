"""Elman RNN (Elman 1990), torch.nn.RNN's cell, and its modReLU variant.

.. math::

    z_t = W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh},\\qquad
    h_t = \\phi(z_t),\\qquad \\phi \\in \\{\\tanh, \\mathrm{relu}, \\mathrm{modReLU}_b\\}

with :math:`\\mathrm{modReLU}_b(z) = \\mathrm{sign}(z)\\,\\max(|z| + b, 0)` (Arjovsky, Shah & Bengio
2016, "Unitary evolution recurrent neural networks"): a learned per-unit threshold ``b``
(``modrelu_bias``) below which a unit is silenced, and the identity (shifted by ``b``) above it.
Unlike tanh and relu it keeps both signs and the magnitude of a unit, so with an orthogonal
``W_hh`` (:func:`rnnkit.orthogonal_recurrence`) a state can circulate for thousands of steps without
decaying: the expRNN recipe (Lezcano-Casado & Martinez-Rubio 2019) for the copy-memory task. Its
derivative is 1 where a unit is active (``h != 0``) and 0 elsewhere; ``dh/db = sign(h)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from rnnkit.cells.base import CellSpec, Gates, Params, State, recurrent_input

NONLINEARITIES = ("tanh", "relu", "modrelu")


def modrelu(z: Tensor, b: Tensor) -> Tensor:
    """``sign(z) * relu(|z| + b)``."""
    return torch.sign(z) * torch.relu(z.abs() + b)


@dataclass(frozen=True)
class ElmanSpec(CellSpec):
    """Elman cell; ``nonlinearity`` is "tanh", "relu" or "modrelu"."""

    nonlinearity: str = "tanh"

    num_gates: ClassVar[int] = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.nonlinearity not in NONLINEARITIES:
            raise ValueError(
                f"Unknown nonlinearity '{self.nonlinearity}'. Select from 'tanh', 'relu' or 'modrelu'."
            )

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"rnn_{self.nonlinearity}"

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = super().param_shapes()
        if self.nonlinearity == "modrelu":
            shapes["modrelu_bias"] = (self.hidden_size,)
        return shapes

    def torch_mode(self) -> str | None:
        return {"tanh": "RNN_TANH", "relu": "RNN_RELU"}.get(self.nonlinearity)

    def kernel_family(self) -> str | None:
        return f"elman_{self.nonlinearity}"

    def unsupported_by_torch(self) -> str | None:
        if self.nonlinearity == "modrelu":
            return "modReLU is not one of torch's RNN nonlinearities"
        return None

    def _reset_extras(self, params: Params) -> None:
        if "modrelu_bias" in params:  # near zero: every unit starts active (Arjovsky et al.)
            params["modrelu_bias"].uniform_(-0.01, 0.01)

    def gate_kinds(self) -> dict[str, str]:
        return {"h": "tanh" if self.nonlinearity == "tanh" else "relu"}  # modReLU's h == 0: as relu's

    def gates(
        self, params: Params, gx_t: Tensor, state: State, recurrent_mask: Tensor | None = None
    ) -> Gates:
        pre = gx_t + torch.nn.functional.linear(
            recurrent_input(state[0], recurrent_mask), params["weight_hh"], params.get("bias_hh")
        )
        if self.nonlinearity == "tanh":
            return {"h": torch.tanh(pre)}
        if self.nonlinearity == "relu":
            return {"h": torch.relu(pre)}
        return {"h": modrelu(pre, params["modrelu_bias"])}

    def state_from_gates(self, params: Params, gates: Gates, state: State) -> State:
        return (gates["h"],)
