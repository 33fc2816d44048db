"""The copy memory task (Hochreiter & Schmidhuber 1997), as formulated by Arjovsky et al. 2016 and
used by Bai, Kolter & Koltun 2018 ("An empirical evaluation of generic convolutional and recurrent
networks for sequence modeling").

Symbols 0..9. Each input sequence has ``T + 20`` steps: the first 10 are digits drawn uniformly from
1..8, then ``T - 1`` blanks (0), then 11 delimiters (9). The target is 0 everywhere except the last
10 steps, which must repeat the 10 digits of the start, in order. The loss is the cross-entropy
averaged over all ``T + 20`` steps (Bai et al.'s metric).

A memoryless strategy (output 0, then the uniform distribution over the 8 digits for the last 10
steps) scores ``10 log 8 / (T + 20)`` (:func:`copy_memory_baseline`): 0.0204 at T=1000, exactly the
loss Bai et al. report for their LSTM, i.e. the LSTM learned nothing at that length.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

#: number of symbols (inputs are one-hot over these; targets are classes in 0..8)
COPY_SYMBOLS = 10
COPY_DIGITS = 10  # how many digits to remember


def copy_memory_baseline(T: int) -> float:
    """Cross-entropy of the best memoryless strategy, ``10 log 8 / (T + 20)``."""
    return COPY_DIGITS * math.log(8) / (T + 2 * COPY_DIGITS)


def copy_memory_batch(
    T: int,
    batch: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """A batch of the copy memory task, time-major.

    Returns ``(x, y)``: ``x`` (T + 20, batch) int64 input symbols (one-hot them for an RNN) and
    ``y`` (T + 20, batch) int64 target classes.
    """
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"T must be an int >= 1, got {T!r}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive int, got {batch!r}")
    if generator is not None and device is None:
        device = generator.device
    n = COPY_DIGITS
    digits = torch.randint(1, 9, (n, batch), generator=generator, device=device)
    x = torch.zeros(T + 2 * n, batch, dtype=torch.int64, device=digits.device)
    x[:n] = digits
    x[T + n - 1 :] = 9
    y = torch.zeros_like(x)
    y[-n:] = digits
    return x, y
