"""Elman RNN (Elman 1990), torch.nn.RNN's cell.

.. math::

    h_t = \\phi(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh}),\\qquad \\phi \\in \\{\\tanh, \\mathrm{relu}\\}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from rnnkit.cells.base import CellSpec, Params, State, recurrent_input

NONLINEARITIES = ("tanh", "relu")


@dataclass(frozen=True)
class ElmanSpec(CellSpec):
    """Elman cell; ``nonlinearity`` is "tanh" or "relu"."""

    nonlinearity: str = "tanh"

    num_gates: ClassVar[int] = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.nonlinearity not in NONLINEARITIES:
            raise ValueError(
                f"Unknown nonlinearity '{self.nonlinearity}'. Select from 'tanh' or 'relu'."
            )

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"rnn_{self.nonlinearity}"

    def step(
        self, params: Params, gx_t: Tensor, state: State, recurrent_mask: Tensor | None = None
    ) -> State:
        (h,) = state
        pre = gx_t + torch.nn.functional.linear(
            recurrent_input(h, recurrent_mask), params["weight_hh"], params.get("bias_hh")
        )
        return (torch.tanh(pre) if self.nonlinearity == "tanh" else torch.relu(pre),)
