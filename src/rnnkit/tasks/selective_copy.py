"""The selective copy task (Gu & Dao 2023, "Mamba", section 3.1 and appendix E.1).

Like copy memory, but the tokens to remember sit at *random* positions among noise, so a model
cannot solve it by time-keeping alone: it must select by content. Tokens: 0 is noise/blank,
``1..vocab`` are data, ``vocab + 1`` is the "recall" marker. Each sequence has ``T + n_tokens``
steps: ``n_tokens`` data tokens (uniform over ``1..vocab``) at random distinct positions among the
first ``T`` steps (in order), blanks elsewhere, then ``n_tokens`` recall markers. The target is the
data tokens in their order, at the recall steps; the other steps carry no loss (target -100, the
``ignore_index`` of ``torch.nn.functional.cross_entropy``).

Mamba's setting is T=4096, 16 tokens, vocab 16; the benchmarks here use shorter sequences (CPU). A
model that ignores the input scores accuracy ``1 / vocab`` and cross-entropy ``log(vocab)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

IGNORE = -100


def selective_copy_symbols(vocab: int) -> int:
    """Number of input symbols (blank, data, recall marker): the one-hot width."""
    return vocab + 2


def selective_copy_batch(
    T: int,
    batch: int,
    n_tokens: int = 16,
    vocab: int = 16,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """A batch of the selective copy task, time-major.

    Returns ``(x, y)``, both (T + n_tokens, batch) int64: input symbols and targets (data tokens at
    the recall steps, -100 elsewhere).
    """
    if isinstance(T, bool) or not isinstance(T, int) or isinstance(n_tokens, bool) or n_tokens < 1:
        raise ValueError(f"T and n_tokens must be positive ints, got T={T!r}, n_tokens={n_tokens!r}")
    if n_tokens > T:
        raise ValueError(f"T ({T}) must be at least n_tokens ({n_tokens})")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive int, got {batch!r}")
    if vocab < 1:
        raise ValueError(f"vocab must be >= 1, got {vocab!r}")
    if generator is not None and device is None:
        device = generator.device
    keys = torch.rand(batch, T, generator=generator, device=device)
    positions = keys.topk(n_tokens, dim=1).indices.sort(dim=1).values  # (batch, n) distinct, ordered
    tokens = torch.randint(1, vocab + 1, (batch, n_tokens), generator=generator, device=device)
    x = torch.zeros(batch, T + n_tokens, dtype=torch.int64, device=tokens.device)
    x.scatter_(1, positions, tokens)
    x[:, T:] = vocab + 1
    y = torch.full_like(x, IGNORE)
    y[:, T:] = tokens
    return x.t().contiguous(), y.t().contiguous()
