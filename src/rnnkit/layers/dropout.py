"""Inverted dropout whose masks come from :mod:`rnnkit.layers.bernoulli_mask` (counter-based, one
vectorised pass on CPU): in training ``y = x * m / (1 - p)`` with ``m_i ~ Bernoulli(1 - p)`` drawn
independently per element, at evaluation ``y = x``.

The distribution is :class:`torch.nn.Dropout`'s; the draws are not (torch's CPU ``bernoulli_`` walks
a Mersenne twister element by element, ~8x slower on a (10, 64, 256) activation). Used inside
rnnkit's own layers (the encoder-decoder), never where a module promises torch.nn's exact masks
(``Recurrent``'s dropout between layers stays torch's, as ``torch.nn.LSTM`` has it).
"""

from __future__ import annotations

from torch import Tensor, nn

from rnnkit.layers.regularizers import check_probability, dropout_mask


class Dropout(nn.Module):
    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = check_probability("dropout", p)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        return x * dropout_mask(tuple(x.shape), self.p, x)

    def extra_repr(self) -> str:
        return f"p={self.p}"
