"""The adding problem (Hochreiter & Schmidhuber 1997), in the form of Le et al. 2015 and Bai et al.
2018.

Each sequence has ``T`` steps of two channels:

- channel 0: values drawn uniformly from [0, 1],
- channel 1: a marker that is 1 at exactly two steps, one drawn uniformly from the first half
  (``t < T // 2``) and one from the second half (``t >= T // 2``), and 0 elsewhere.

The target is the sum of the two marked values, in [0, 2]. A model must remember the first marked
value for up to ``T`` steps while ignoring everything else, which is what makes the task a test of
long-range memory.

Always predicting 1.0 (the target's mean) scores an MSE of Var(U1 + U2) = 2/12 = 1/6 ≈ 0.167
(:data:`ADDING_BASELINE_MSE`); a model that beats it clearly has learned to carry information
across time.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: MSE of the constant prediction 1.0: the variance of the sum of two U[0, 1] values, 1/6.
ADDING_BASELINE_MSE = 1.0 / 6.0


def adding_batch(
    T: int,
    batch: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> tuple[Tensor, Tensor]:
    """A batch of the adding problem, time-major.

    Args:
        T: sequence length, at least 2 (each half must hold one marker).
        batch: number of sequences.
        generator: random source (a CPU generator if ``device`` is CPU); pass a seeded one for
            reproducible data. ``None`` uses torch's global random state.
        device, dtype: of the returned tensors (defaults: CPU, torch's default float dtype).

    Returns:
        ``(x, y)``: ``x`` of shape ``(T, batch, 2)`` (values, markers) and ``y`` of shape
        ``(batch,)``, the sum of the two marked values.
    """
    if isinstance(T, bool) or not isinstance(T, int) or T < 2:
        raise ValueError(f"T must be an int >= 2 (one marker in each half), got {T!r}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive int, got {batch!r}")
    dtype = dtype or torch.get_default_dtype()
    if generator is not None:
        device = device if device is not None else generator.device
    opts = {"generator": generator, "device": device}

    values = torch.rand(T, batch, **opts, dtype=dtype)
    half = T // 2
    first = torch.randint(0, half, (batch,), **opts)
    second = torch.randint(half, T, (batch,), **opts)
    cols = torch.arange(batch, device=values.device)
    markers = torch.zeros(T, batch, device=values.device, dtype=dtype)
    markers[first, cols] = 1.0
    markers[second, cols] = 1.0

    x = torch.stack([values, markers], dim=-1)
    y = values[first, cols] + values[second, cols]
    return x, y
