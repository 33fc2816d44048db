"""Mask sampling for the recurrent regularisers. Masks are built once per sequence, outside the
time loop (as Keras does), and passed to the executors.

- variational (locked) dropout: one Bernoulli mask per sequence and feature, the same at every
  step, on each layer's input (Gal & Ghahramani 2016, "A Theoretically Grounded Application of
  Dropout in Recurrent Neural Networks"; the "locked dropout" of AWD-LSTM).
- recurrent dropout: one mask per sequence on ``h_{t-1}`` where it meets ``W_hh`` (Gal & Ghahramani).
- zoneout: per step and unit, keep the previous state value with probability p
  (Krueger et al. 2017, "Zoneout"); at evaluation the expectation ``p*s_{t-1} + (1-p)*s~_t``.
- weight drop (DropConnect on ``W_hh``, Wan et al. 2013), once per forward pass (Merity et al. 2018,
  "Regularizing and Optimizing LSTM Language Models").

Dropout masks are scaled by 1/(1-p) so that evaluation needs no rescaling. The Bernoulli draws come
from :mod:`rnnkit.layers.bernoulli_mask` (counter-based, one vectorised pass on CPU).
"""

from __future__ import annotations

from torch import Tensor

from rnnkit.layers.bernoulli_mask import bernoulli_mask


def check_probability(name: str, p: float) -> float:
    if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
    return float(p)


def dropout_mask(shape: tuple[int, ...], p: float, like: Tensor) -> Tensor:
    """Bernoulli(1-p) / (1-p) mask (all zeros when p == 1)."""
    if p >= 1.0:
        return like.new_zeros(shape)
    return bernoulli_mask(shape, 1.0 - p, like).div_(1.0 - p)


def zoneout_weights(
    p: float, T: int, batch: int, size: int, like: Tensor, training: bool
) -> Tensor | None:
    """Weight of the previous state per step: Bernoulli(p) draws (T, B, n) in training, p at eval."""
    if p == 0.0:
        return None
    if not training:
        return like.new_tensor(p)
    return bernoulli_mask((T, batch, size), p, like)
