"""A Transformer encoder-decoder (Vaswani et al. 2017, pre-norm) with the interface of
:class:`~rnnkit.layers.seq2seq.Seq2Seq`, so :mod:`rnnkit.layers.seq2seq_search` decodes it unchanged.

::

    x_s   = sqrt(d) E src_s + P_s                       P: sinusoidal positions (no parameters)
    keys  = LN(TransformerEncoder(x; source padding mask))          torch.nn.TransformerEncoderLayer, pre-norm
    y_t   = sqrt(d) E tgt_t + P_t
    h     = LN(decoder layers(y; causal mask, keys, source padding mask))   torch.nn.TransformerDecoderLayer
    logits = E h + b                                   tied (and one embedding for source and target)

Time-major ids ``(T, B)`` as the rest of rnnkit. The decoder layers are ``torch.nn.TransformerDecoderLayer``
modules: teacher forcing runs their own ``forward`` over the whole target.

``decoder.step(tokens, state, memory)``: one new position per call with a key/value cache. The state
holds each layer's self-attention keys and values of the positions fed so far, (N, heads, t, d/heads);
the memory holds each layer's cross-attention keys and values of the source, projected once in
``encode``. A step runs the new position only (per layer, with ``W`` the module's in/out projections)::

    h = LN1(x);  q, k, v = h W_qkv;  K = [K; k], V = [V; v]
    x = x + W_o softmax(q K^T / sqrt(d/heads)) V                   (per head; the past only: causal)
    h = LN2(x);  x = x + W_o' softmax(h W_q' K_src^T / sqrt(d/heads) - inf * padding) V_src
    x = x + FF(LN3(x))

which is the computation of ``torch.nn.MultiheadAttention`` inside the layers' ``forward``, and also
gives the last layer's cross-attention weights (averaged over heads) for the heat maps; teacher
forcing over a target equals the steps on its prefixes (tested), so a sentence costs O(t) position
updates instead of re-running its prefix at every step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

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
    """The encoded source, batch first: ``keys`` (B, S, d); ``mask`` (B, S), True on real tokens;
    ``cross``: each decoder layer's projected (keys, values) of the source, (B, heads, S, d/heads)."""

    keys: Tensor
    mask: Tensor
    cross: tuple[tuple[Tensor, Tensor], ...] = ()

    def select(self, index: Tensor) -> TransformerMemory:
        return TransformerMemory(self.keys.index_select(0, index), self.mask.index_select(0, index),
                                 tuple((k.index_select(0, index), v.index_select(0, index)) for k, v in self.cross))


@dataclass
class DecoderCache:
    """The positions fed so far: ``length`` and each layer's self-attention (keys, values),
    (N, heads, length, d/heads)."""

    length: int
    layers: tuple[tuple[Tensor, Tensor], ...]

    def select(self, index: Tensor) -> DecoderCache:
        return DecoderCache(self.length, tuple((k.index_select(0, index), v.index_select(0, index))
                                               for k, v in self.layers))


def _heads(x: Tensor, heads: int) -> Tensor:
    """(N, t, d) -> (N, heads, t, d/heads)."""
    n, t, d = x.shape
    return x.view(n, t, heads, d // heads).transpose(1, 2)


def _attend(attn: nn.MultiheadAttention, q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None
            ) -> tuple[Tensor, Tensor]:
    """Heads' attention of one position: ``q`` (N, heads, 1, dh) over ``k``, ``v`` (N, heads, S, dh),
    ``bias`` (N, 1, 1, S) or None -> (the out-projected output (N, 1, d), weights averaged over heads (N, S))."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if bias is not None:
        scores = scores + bias
    w = torch.softmax(scores, -1)
    out = F.dropout(w, attn.dropout, attn.training) @ v  # (N, heads, 1, dh)
    n, h, _, dh = out.shape
    return attn.out_proj(out.transpose(1, 2).reshape(n, 1, h * dh)), w.mean(1)[:, 0]


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

    def embed(self, ids: Tensor, start: int = 0) -> Tensor:
        """``ids`` (N, t) at positions ``start`` .. ``start + t - 1`` -> (N, t, d): scaled embeddings plus
        positions, dropout."""
        pos = sinusoidal_positions(start + ids.shape[1], self.d_model, ids.device)[start:]
        return self.drop(self.embedding(ids) * math.sqrt(self.d_model) + pos)

    def run(self, ids: Tensor, memory: TransformerMemory) -> Tensor:
        """Logits (N, t, V) for the target ``ids`` (N, t): torch.nn's decoder layers over all of it."""
        t = ids.shape[1]
        causal = torch.triu(torch.full((t, t), float("-inf"), device=ids.device), 1)
        x = self.embed(ids)
        for layer in self.layers:
            x = layer(x, memory.keys, tgt_mask=causal, memory_key_padding_mask=~memory.mask, tgt_is_causal=True)
        return self.out(self.norm(x))

    def project_source(self, keys: Tensor) -> tuple[tuple[Tensor, Tensor], ...]:
        """Each layer's cross-attention keys and values of the encoded source ``keys`` (B, S, d)."""
        out = []
        for layer in self.layers:
            attn = layer.multihead_attn
            _, w_k, w_v = attn.in_proj_weight.chunk(3)
            _, b_k, b_v = attn.in_proj_bias.chunk(3)
            out.append((_heads(F.linear(keys, w_k, b_k), attn.num_heads),
                        _heads(F.linear(keys, w_v, b_v), attn.num_heads)))
        return tuple(out)

    def step(self, tokens: Tensor, state: DecoderCache, memory: TransformerMemory
             ) -> tuple[Tensor, DecoderCache, Tensor]:
        """``tokens`` (N,) -> ``(logits (N, V), state, cross-attention weights (N, S))``."""
        t = state.length
        x = self.embed(tokens[:, None], t)  # (N, 1, d)
        pad_bias = torch.zeros(memory.mask.shape, dtype=x.dtype, device=x.device)
        pad_bias = pad_bias.masked_fill(~memory.mask, float("-inf"))[:, None, None, :]
        cache, w = [], None
        for layer, (past_k, past_v), (src_k, src_v) in zip(self.layers, state.layers, memory.cross, strict=True):
            attn = layer.self_attn
            q, k, v = (_heads(p, attn.num_heads) for p in F.linear(layer.norm1(x), attn.in_proj_weight,
                                                                   attn.in_proj_bias).chunk(3, -1))
            k, v = torch.cat([past_k, k], 2), torch.cat([past_v, v], 2)
            cache.append((k, v))
            x = x + layer.dropout1(_attend(attn, q, k, v, None)[0])
            cross = layer.multihead_attn
            w_q, _, _ = cross.in_proj_weight.chunk(3)
            b_q, _, _ = cross.in_proj_bias.chunk(3)
            a, w = _attend(cross, _heads(F.linear(layer.norm2(x), w_q, b_q), cross.num_heads), src_k, src_v, pad_bias)
            x = x + layer.dropout2(a)
            h = layer.norm3(x)
            x = x + layer.dropout3(layer.linear2(layer.dropout(layer.activation(layer.linear1(h)))))
        return self.out(self.norm(x))[:, 0], DecoderCache(t + 1, tuple(cache)), w

    def empty_cache(self, batch: int, like: Tensor) -> DecoderCache:
        """The state before the first token: no position fed."""
        layers = []
        for layer in self.layers:
            h = layer.self_attn.num_heads
            empty = like.new_zeros(batch, h, 0, self.d_model // h)
            layers.append((empty, empty))
        return DecoderCache(0, tuple(layers))


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

    def encode(self, src: Tensor, lengths: Tensor) -> tuple[TransformerMemory, DecoderCache]:
        """``src`` (S, B), ``lengths`` (B,) -> the memory (with the decoder's projected source) and the
        empty decoder cache."""
        memory = self._encoded(src, lengths)
        memory.cross = self.decoder.project_source(memory.keys)
        return memory, self.decoder.empty_cache(src.shape[1], memory.keys)

    def _encoded(self, src: Tensor, lengths: Tensor) -> TransformerMemory:
        """The encoder's output and the source mask (no projection for the decoder's steps)."""
        ids = src.t()
        mask = torch.arange(ids.shape[1], device=src.device)[None, :] < lengths.to(src.device)[:, None]
        keys = self.encoder_norm(self.encoder(self.decoder.embed(ids), src_key_padding_mask=~mask))
        return TransformerMemory(keys, mask)

    def forward(self, src: Tensor, lengths: Tensor, targets_in: Tensor, sampling: float = 0.0) -> Tensor:
        """Teacher-forced logits (T, B, V) for ``targets_in`` (T, B), BOS first (``sampling`` must be 0)."""
        if sampling and self.training:
            raise ValueError("scheduled sampling is for the recurrent decoder; the transformer trains on references")
        return self.decoder.run(targets_in.t(), self._encoded(src, lengths)).transpose(0, 1)
