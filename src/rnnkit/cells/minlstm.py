"""minLSTM (Feng et al. 2024, "Were RNNs all we needed?"): an LSTM whose gates read only ``x_t``,
with the forget and input gates normalised to sum to one (the paper's time-independent scale).

Gate order f, i, h~ in ``weight_ih`` (3H, I) / ``bias_ih`` (3H); there is no ``weight_hh``.

.. math::

    f_t &= \\sigma(W_{if} x_t + b_{if}), \\quad i_t = \\sigma(W_{ii} x_t + b_{ii}) \\\\
    f'_t &= f_t / (f_t + i_t), \\quad i'_t = i_t / (f_t + i_t) \\\\
    \\tilde h_t &= g(W_{ih} x_t + b_{ih}) \\\\
    h_t &= f'_t \\odot h_{t-1} + i'_t \\odot \\tilde h_t

with ``g`` as in :mod:`rnnkit.cells.mingru` (``activation="identity"``: no ``g``). The normalised
gates are computed in log space, as the paper's log-space version does, so that saturated gates
(``f_t, i_t -> 0`` in floating point) give no 0/0:
``d = log f_t - log i_t = softplus(-p_i) - softplus(-p_f)``, ``f'_t = sigmoid(d)``,
``i'_t = sigmoid(-d) = 1 - f'_t``.

The recurrence is linear in ``h`` (``a_t = f'_t``, ``b_t = i'_t h~_t``), which the ``scan`` executor
runs in parallel in time. ``init="chrono"`` and ``forget_bias`` set ``b_f`` as for the LSTM
(chrono: ``b_f = log(U[1, T_max - 1])``, ``b_i = -b_f``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor
from torch.nn.functional import softplus

from rnnkit.cells.base import Gates, Params, chrono_bias
from rnnkit.cells.mingru import MinimalCell


@dataclass(frozen=True)
class MinLSTMSpec(MinimalCell):
    """minLSTM cell (see the module docstring for the equations)."""

    name: ClassVar[str] = "minlstm"
    num_gates: ClassVar[int] = 3

    def _chrono_init(self, params: Params, tmax: float) -> None:
        if not self.bias:
            raise ValueError("init='chrono' sets gate biases; it needs bias=True")
        H = self.hidden_size
        bf = chrono_bias(H, tmax, params["bias_ih"])
        params["bias_ih"][:H].copy_(bf)
        params["bias_ih"][H : 2 * H].copy_(-bf)

    def _set_forget_bias(self, params: Params, value: float) -> None:
        if not self.bias:
            raise ValueError("forget_bias sets a gate bias; it needs bias=True")
        params["bias_ih"][: self.hidden_size].fill_(value)

    def gate_kinds(self) -> dict[str, str]:
        return {"f": "sigmoid"}

    def named_gate(self, a: Tensor) -> Gates:
        return {"f": a}  # the normalised forget gate f' = f / (f + i); i' = 1 - f'

    def scan_coefficients(self, gx: Tensor) -> tuple[Tensor, Tensor]:
        pf, pi, ph = gx.chunk(3, dim=-1)
        d = softplus(-pi) - softplus(-pf)
        return torch.sigmoid(d), torch.sigmoid(-d) * self.candidate(ph)

    def kernel_family(self) -> str | None:
        return "minlstm"  # declared by the class itself: the executors trust no inherited family
