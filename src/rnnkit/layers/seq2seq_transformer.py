"""A Transformer encoder-decoder (Vaswani et al. 2017, pre-norm) with the interface of
:class:`~rnnkit.layers.seq2seq.Seq2Seq`, so :mod:`rnnkit.layers.seq2seq_search` decodes it unchanged.

::

    x_s   = sqrt(d) E src_s + P_s                       P: sinusoidal positions (no parameters)
    keys  = LN(TransformerEncoder(x; source padding mask))          torch.nn.TransformerEncoderLayer, pre-norm
    y_t   = sqrt(d) E tgt_t + P_t
    h     = LN(decoder layers(y; causal mask, keys, source padding mask))   torch.nn.TransformerDecoderLayer
    logits = E h + b                                   tied (and one embedding for source and target)

Time-major ids ``(T, B)`` as the rest of rnnkit. The decoder layers are ``torch.nn.TransformerDecoderLayer``
modules run by :func:`_decoder_layer` (the same computation as their ``forward`` with ``norm_first=True``)
so that the last layer's cross-attention weights, averaged over heads, can be returned.

``decoder.step(tokens, state, memory)``: the state is the target prefix so far (N, t); a step appends
``tokens`` and runs the decoder over the whole prefix (no key/value cache: O(t^2) per sentence, which
is fine for sentence-length outputs) and returns the last position's logits. Teacher forcing over a
target is exactly the steps' computation on its prefixes (tested).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["TransformerSeq2Seq", "sinusoidal_positions"]


def sinusoidal_positions(length: int, d: int, device=None) -> Tensor:
    """``(length, d)``: ``sin(p / 10000^(2i/d))`` in even and ``cos`` in odd columns."""
    pos = torch.arange(length, dtype=torch.float32, device=device)[:, None]
    freq = torch.exp(torch.arange(0, d, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / d))
    out = torch.zeros(length, d, device=device)
    out[:, 0::2] = torch.sin(pos * freq)
    out[:, 1::2] = torch.cos(pos * freq[: d // 2])
    return out


@dataclass
class TransformerMemory:
    """The encoded source, batch first: ``keys`` (B, S, d); ``mask`` (B, S), True on real tokens."""

    keys: Tensor
    mask: Tensor

    def select(self, index: Tensor) -> TransformerMemory:
        return TransformerMemory(self.keys.index_select(0, index), self.mask.index_select(0, index))


@dataclass
class PrefixState:
    """The target tokens fed so far, BOS first: (N, t)."""

    tokens: Tensor

    def select(self, index: Tensor) -> PrefixState:
        return PrefixState(self.tokens.index_select(0, index))


def _decoder_layer(layer: nn.TransformerDecoderLayer, x: Tensor, keys: Tensor, causal: Tensor,
                   pad: Tensor, need_weights: bool) -> tuple[Tensor, Tensor | None]:
    """``layer`` (``norm_first=True``, batch first) on ``x`` (N, t, d); optionally the cross-attention
    weights (N, t, S) averaged over heads."""
    h = layer.norm1(x)
    x = x + layer.dropout1(layer.self_attn(h, h, h, attn_mask=causal, need_weights=False)[0])
    h = layer.norm2(x)
    a, w = layer.multihead_attn(h, keys, keys, key_padding_mask=pad, need_weights=need_weights)
    x = x + layer.dropout2(a)
    h = layer.norm3(x)
    return x + layer.dropout3(layer.linear2(layer.dropout(layer.activation(layer.linear1(h))))), w


class TransformerDecoder(nn.Module):
    """The decoder stack and output layer; ``step`` is what the search functions call."""

    def __init__(self, embedding: nn.Embedding, d_model: int, num_layers: int, heads: int, ff: int,
                 dropout: float) -> None:
        super().__init__()
        self.embedding, self.d_model = embedding, d_model
        self.layers = nn.ModuleList(
            nn.TransformerDecoderLayer(d_model, heads, ff, dropout, activation="gelu", batch_first=True,
                                       norm_first=True) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, embedding.num_embeddings)
        self.out.weight = embedding.weight
        self.drop = nn.Dropout(dropout)

    def embed(self, ids: Tensor) -> Tensor:
        """``ids`` (N, t) -> (N, t, d): scaled embeddings plus positions, dropout."""
        pos = sinusoidal_positions(ids.shape[1], self.d_model, ids.device)
        return self.drop(self.embedding(ids) * math.sqrt(self.d_model) + pos)

    def run(self, ids: Tensor, memory: TransformerMemory, need_weights: bool = False
            ) -> tuple[Tensor, Tensor | None]:
        """Logits (N, t, V) for the prefix ``ids`` (N, t); the last layer's cross-attention (N, t, S)."""
        t = ids.shape[1]
        causal = torch.triu(torch.full((t, t), float("-inf"), device=ids.device), 1)
        x, w, pad = self.embed(ids), None, ~memory.mask
        for i, layer in enumerate(self.layers):
            x, w = _decoder_layer(layer, x, memory.keys, causal, pad, need_weights and i == len(self.layers) - 1)
        return self.out(self.norm(x)), w

    def step(self, tokens: Tensor, state: PrefixState, memory: TransformerMemory
             ) -> tuple[Tensor, PrefixState, Tensor]:
        """``tokens`` (N,) -> ``(logits (N, V), state, cross-attention weights (N, S))``."""
        prefix = torch.cat([state.tokens, tokens[:, None]], 1)
        logits, w = self.run(prefix, memory, need_weights=True)
        return logits[:, -1], PrefixState(prefix), w[:, -1]


class TransformerSeq2Seq(nn.Module):
    """Args:
        vocab_size: V of the joint vocabulary; d_model; encoder_layers, decoder_layers; heads (divides
        d_model); ff: the feed-forward width (default 4 d_model); dropout; pad_id.
    """

    def __init__(self, vocab_size: int, d_model: int = 256, encoder_layers: int = 2, decoder_layers: int = 2,
                 heads: int = 4, ff: int | None = None, dropout: float = 0.1, pad_id: int = 0) -> None:
        super().__init__()
        if d_model % heads or d_model % 2:
            raise ValueError(f"d_model must be even and a multiple of heads, got {d_model} and {heads}")
        ff = ff or 4 * d_model
        self.cfg: dict[str, Any] = {"vocab_size": vocab_size, "d_model": d_model, "encoder_layers": encoder_layers,
                                    "decoder_layers": decoder_layers, "heads": heads, "ff": ff, "dropout": dropout,
                                    "pad_id": pad_id}
        self.pad_id, self.d_model = pad_id, d_model
        self.embedding = nn.Embedding(vocab_size, d_model)
        nn.init.normal_(self.embedding.weight, std=d_model ** -0.5)
        layer = nn.TransformerEncoderLayer(d_model, heads, ff, dropout, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, encoder_layers, enable_nested_tensor=False)
        self.encoder_norm = nn.LayerNorm(d_model)
        self.decoder = TransformerDecoder(self.embedding, d_model, decoder_layers, heads, ff, dropout)

    def get_config(self) -> dict[str, Any]:
        return dict(self.cfg)

    def encode(self, src: Tensor, lengths: Tensor) -> tuple[TransformerMemory, PrefixState]:
        """``src`` (S, B), ``lengths`` (B,) -> the memory and the empty target prefix."""
        ids = src.t()
        mask = torch.arange(ids.shape[1], device=src.device)[None, :] < lengths.to(src.device)[:, None]
        keys = self.encoder_norm(self.encoder(self.decoder.embed(ids), src_key_padding_mask=~mask))
        return TransformerMemory(keys, mask), PrefixState(ids.new_zeros(ids.shape[0], 0))

    def forward(self, src: Tensor, lengths: Tensor, targets_in: Tensor, sampling: float = 0.0) -> Tensor:
        """Teacher-forced logits (T, B, V) for ``targets_in`` (T, B), BOS first (``sampling`` must be 0)."""
        if sampling and self.training:
            raise ValueError("scheduled sampling is for the recurrent decoder; the transformer trains on references")
        memory, _ = self.encode(src, lengths)
        return self.decoder.run(targets_in.t(), memory)[0].transpose(0, 1)
