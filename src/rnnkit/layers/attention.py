"""Attention over an encoded source with a padding mask: additive (Bahdanau) and multiplicative (Luong).

Shapes (batch first, one query per row, or ``T`` queries per row: then the scores, weights and contexts
gain a dimension T after B, every query attending to the same keys)::

    query  q      (B, Q)        e.g. the decoder's hidden state; or (B, T, Q): every target position at once
    keys   k_s    (B, S, K)     the encoder's outputs, s = 1..S
    mask          (B, S) bool   True where position s is a real token, False on padding

Scores ``e_s`` per source position, then

    a_s = exp(e_s) / sum_{s' : mask_s'} exp(e_s')   (a_s = 0 where mask_s is False)
    c   = sum_s a_s k_s                               (the context vector, (B, K))

Score functions:

- additive (Bahdanau, Cho & Bengio 2015):  ``e_s = v^T tanh(W_q q + W_k k_s)``
- multiplicative, ``general`` (Luong, Pham & Manning 2015):  ``e_s = q^T W_a k_s``
- multiplicative, ``dot``:  ``e_s = q^T k_s`` (needs ``Q == K``)

The key side of every score is linear in ``k_s`` and does not depend on the query, so
:meth:`prepare` computes it once per source (``W_k k_s`` or ``W_a k_s``); a decoder calls it once and
passes the result to every step (``forward(query, keys, mask, prepared=...)``).

A row whose mask is all False (an empty source) gets zero weights and a zero context, not NaN.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["AdditiveAttention", "MultiplicativeAttention", "masked_softmax"]


def masked_softmax(scores: Tensor, mask: Tensor | None) -> Tensor:
    """Softmax over the last dimension where ``mask`` is True; exactly 0 elsewhere (all-False rows: 0)."""
    if mask is None:
        return torch.softmax(scores, -1)
    if scores.dim() == mask.dim() + 1:  # T queries per row share the row's mask
        mask = mask.unsqueeze(-2)
    scores = scores.masked_fill(~mask, float("-inf"))
    # an all-padding row would be softmax(-inf, ...) = NaN: give it finite scores, then zero it
    empty = ~mask.any(-1, keepdim=True)
    weights = torch.softmax(scores.masked_fill(empty, 0.0), -1)
    return weights.masked_fill(~mask, 0.0)


class AdditiveAttention(nn.Module):
    """Bahdanau's additive attention, ``e_s = v^T tanh(W_q q + W_k k_s)`` (see the module docstring).

    Args:
        query_size: Q; key_size: K; attention_size: the width of ``W_q q + W_k k_s`` (default K).
    """

    def __init__(self, query_size: int, key_size: int, attention_size: int | None = None) -> None:
        super().__init__()
        a = attention_size or key_size
        self.query_size, self.key_size, self.attention_size = query_size, key_size, a
        self.query_proj = nn.Linear(query_size, a, bias=False)
        self.key_proj = nn.Linear(key_size, a, bias=True)
        self.v = nn.Linear(a, 1, bias=False)

    def prepare(self, keys: Tensor) -> Tensor:
        """``W_k k_s + b`` for every source position: (B, S, A), computed once per source."""
        return self.key_proj(keys)

    def forward(self, query: Tensor, keys: Tensor, mask: Tensor | None = None,
                prepared: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(context (B, K), weights (B, S))``; for queries (B, T, Q): ``(B, T, K), (B, T, S)``."""
        pk = self.prepare(keys) if prepared is None else prepared
        if query.dim() == 3:
            scores = self.v(torch.tanh(pk.unsqueeze(1) + self.query_proj(query).unsqueeze(2))).squeeze(-1)
            weights = masked_softmax(scores, mask)
            return torch.bmm(weights, keys), weights
        scores = self.v(torch.tanh(pk + self.query_proj(query).unsqueeze(1))).squeeze(-1)
        weights = masked_softmax(scores, mask)
        return torch.bmm(weights.unsqueeze(1), keys).squeeze(1), weights


class MultiplicativeAttention(nn.Module):
    """Luong's multiplicative attention: ``general`` ``e_s = q^T W_a k_s`` or ``dot`` ``e_s = q^T k_s``.

    Args:
        query_size: Q; key_size: K (``dot`` needs Q == K); mode: "general" or "dot".
        scale: divide the scores by sqrt(Q) (off by default, as in Luong et al.).
    """

    MODES = ("general", "dot")

    def __init__(self, query_size: int, key_size: int, mode: str = "general", scale: bool = False) -> None:
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}, got {mode!r}")
        if mode == "dot" and query_size != key_size:
            raise ValueError(f"dot attention needs query_size == key_size, got {query_size} and {key_size}")
        self.query_size, self.key_size, self.mode, self.scale = query_size, key_size, mode, scale
        # W_a applied to the keys (not the query): the product is computed once per source
        self.key_proj = nn.Linear(key_size, query_size, bias=False) if mode == "general" else None

    def prepare(self, keys: Tensor) -> Tensor:
        """``W_a k_s`` (general) or ``k_s`` (dot) for every source position: (B, S, Q)."""
        return keys if self.key_proj is None else self.key_proj(keys)

    def forward(self, query: Tensor, keys: Tensor, mask: Tensor | None = None,
                prepared: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(context (B, K), weights (B, S))``; for queries (B, T, Q): ``(B, T, K), (B, T, S)``."""
        pk = self.prepare(keys) if prepared is None else prepared
        many = query.dim() == 3
        scores = torch.bmm(query, pk.transpose(1, 2)) if many else torch.bmm(pk, query.unsqueeze(-1)).squeeze(-1)
        if self.scale:
            scores = scores / self.query_size ** 0.5
        weights = masked_softmax(scores, mask)
        if many:
            return torch.bmm(weights, keys), weights
        return torch.bmm(weights.unsqueeze(1), keys).squeeze(1), weights


def make_attention(kind: str, query_size: int, key_size: int) -> AdditiveAttention | MultiplicativeAttention:
    """``kind``: "additive" (Bahdanau), "general" or "dot" (Luong)."""
    if kind == "additive":
        return AdditiveAttention(query_size, key_size)
    if kind in MultiplicativeAttention.MODES:
        return MultiplicativeAttention(query_size, key_size, kind)
    raise ValueError(f"unknown attention {kind!r}; choose additive, general or dot")
