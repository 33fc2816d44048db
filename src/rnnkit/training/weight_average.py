"""An exponential moving average of a model's weights (``ema_decay``), kept beside the training.

After every optimiser step each parameter's shadow ``s`` moves towards the parameter ``p``::

    s_t = d_t * s_{t-1} + (1 - d_t) * p_t,    d_t = min(decay, (1 + t) / (10 + t))

The ramp of ``d_t`` lets the shadow follow the fast-moving weights of the first steps instead of
holding the initialisation for about ``1 / (1 - decay)`` steps. The optimiser keeps stepping the raw
weights; validation, the saved model and the scores after training use the shadows (Polyak & Juditsky
1992's averaging with a forgetting factor, as in Marian's ``--exponential-smoothing``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class WeightAverage:
    """Shadows of ``params`` (their exponential moving average with ``decay``)."""

    def __init__(self, params: list[nn.Parameter], decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must lie in (0, 1), got {decay}")
        self.params = list(params)
        self.decay = decay
        self.steps = 0
        self.shadows = [p.detach().clone() for p in self.params]

    def rate(self) -> float:
        """The decay ``d_t`` of the next update."""
        t = self.steps + 1
        return min(self.decay, (1 + t) / (10 + t))

    @torch.no_grad()
    def update(self) -> None:
        """Move the shadows towards the parameters (call after each optimiser step)."""
        weight = 1.0 - self.rate()
        torch._foreach_lerp_(self.shadows, [p.detach() for p in self.params], weight)
        self.steps += 1

    @torch.no_grad()
    def swap(self) -> None:
        """Exchange the parameters' values and the shadows (a second call undoes the first)."""
        for p, s in zip(self.params, self.shadows, strict=True):
            held = p.detach().clone()
            p.copy_(s)
            s.copy_(held)

    @torch.no_grad()
    def apply(self) -> None:
        """Copy the averages into the parameters (training is over: the raw values are not needed)."""
        torch._foreach_copy_([p.detach() for p in self.params], self.shadows)

    def state(self) -> dict[str, object]:
        return {"steps": self.steps, "shadows": [s.detach().cpu().clone() for s in self.shadows]}

    @torch.no_grad()
    def load(self, steps: int, shadows: list[Tensor]) -> None:
        """Restore a :meth:`state` (checked by ``checkpoint_state``: one tensor shaped like each parameter)."""
        self.steps = steps
        for s, saved in zip(self.shadows, shadows, strict=True):
            s.copy_(saved)
