"""Several encoder-decoders decoded as one: the search sees the mean of their next-token distributions.

::

    log p(y_t | y_<t, x) = log( (1/N) sum_n p_n(y_t | y_<t, x) )

Each member encodes the source itself and keeps its own decoder state; ``decoder.step`` steps every
member on the same tokens and returns the log of the averaged probabilities as the logits (already
normalised, so the search's log-softmax leaves them unchanged). It offers the interface of
:mod:`rnnkit.layers.seq2seq_search` (``encode``, ``decoder.step``, ``select`` on memory and state), so
greedy and beam search, n-best and the length penalty work unchanged. The members must share one
vocabulary (the caller checks the tokenizers); architectures may differ (any mix of Seq2Seq and the
Transformer baseline). The attention weights returned are the first member's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["Seq2SeqEnsemble"]


@dataclass
class _Each:
    """One memory or decoder state per member, reordered together."""

    parts: tuple[Any, ...]

    def select(self, index: Tensor) -> _Each:
        return _Each(tuple(p.select(index) for p in self.parts))


class _AveragedDecoder:
    """``decoder.step`` of the ensemble (a plain object: the members are the ensemble's modules)."""

    def __init__(self, members: nn.ModuleList) -> None:
        self.members = members

    def step(self, tokens: Tensor, state: _Each, memory: _Each) -> tuple[Tensor, _Each, Tensor]:
        log_probs, states, first_weights = [], [], None
        for model, s, m in zip(self.members, state.parts, memory.parts, strict=True):
            logits, s, weights = model.decoder.step(tokens, s, m)
            log_probs.append(torch.log_softmax(logits.float(), -1))
            states.append(s)
            first_weights = weights if first_weights is None else first_weights
        mean = torch.logsumexp(torch.stack(log_probs), 0) - math.log(len(log_probs))
        return mean, _Each(tuple(states)), first_weights


class Seq2SeqEnsemble(nn.Module):
    """``members``: encoder-decoders over the same vocabulary (see the module docstring)."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        self.decoder = _AveragedDecoder(self.members)

    def encode(self, src: Tensor, lengths: Tensor) -> tuple[_Each, _Each]:
        pairs = [model.encode(src, lengths) for model in self.members]
        return _Each(tuple(m for m, _ in pairs)), _Each(tuple(s for _, s in pairs))
