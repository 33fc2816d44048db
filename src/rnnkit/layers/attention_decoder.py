"""An attentional decoder with input feeding (Luong, Pham & Manning 2015), stepped by ``Recurrent.step()``.

One step, from the previous target token ``y_{t-1}`` and the previous attentional vector ``h~_{t-1}``::

    x_t   = [E y_{t-1} ; h~_{t-1}]                    input feeding: the last step's attention informs this one
    h_t   = RNN(x_t, s_{t-1})                        any rnnkit cell family, unidirectional, stepped
    c_t, a_t = attention(h_t, keys, mask)            additive or multiplicative (rnnkit.layers.attention)
    h~_t  = tanh(W_c [c_t ; h_t])                    the attentional vector, size A
    logits_t = W_o h~_t + b_o                        tied: W_o = E (needs A = embedding size)

Without input feeding (``input_feeding=False``) the recurrent layer reads ``x_t = E y_{t-1}`` alone: the
attention no longer feeds back into the recurrence, so teacher forcing runs the recurrent layer over the
whole target in one call (the fused executors) and attends from every position at once (in the G2P
runs of docs/translate.md the time saved pays for a second encoder layer); ``h~_t`` still makes the
output.

Training runs the same step over the target (teacher forcing: ``y_{t-1}`` is the reference token;
with ``sampling`` > 0 it is, with that probability per row, the model's own previous argmax: scheduled
sampling, Bengio et al. 2015). Inference under ``torch.no_grad()`` on CPU takes ``Recurrent.step()``'s
fast streaming path (one C++ call per step for the whole stack).

Dropout sits outside the recurrent layer (on the embeddings and on ``h~``), because ``step()`` runs with
evaluation semantics for the regularisers inside ``Recurrent``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rnnkit.layers.attention import make_attention
from rnnkit.layers.dropout import Dropout
from rnnkit.layers.recurrent import Recurrent

__all__ = ["AttentionDecoder", "DecoderState", "Memory"]


@dataclass
class Memory:
    """The encoded source, batch first: ``keys`` (B, S, K), their attention-side projection
    ``prepared`` (computed once per source), ``mask`` (B, S), True on real tokens."""

    keys: Tensor
    prepared: Tensor
    mask: Tensor

    def select(self, index: Tensor) -> Memory:
        """Rows ``index`` of every tensor (beam expansion)."""
        return Memory(self.keys.index_select(0, index), self.prepared.index_select(0, index),
                      self.mask.index_select(0, index))


@dataclass
class DecoderState:
    """``rnn``: the recurrent state as ``Recurrent`` takes it; ``feed``: the last attentional vector (B, A)."""

    rnn: Tensor | tuple[Tensor, ...]
    feed: Tensor

    def select(self, index: Tensor) -> DecoderState:
        """Rows ``index`` (beam reordering): the state components are (L, B, n)."""
        rnn = (tuple(s.index_select(1, index) for s in self.rnn) if isinstance(self.rnn, tuple)
               else self.rnn.index_select(1, index))
        return DecoderState(rnn, self.feed.index_select(0, index))


class AttentionDecoder(nn.Module):
    """The decoder of the module docstring.

    Args:
        vocab_size: V; embedding_size: E; hidden_size: H of the recurrent layer; key_size: K (encoder
        output width); cell, num_layers: of the recurrent layer; attention: "additive", "general" or
        "dot"; attentional_size: A (default E; tied weights need A == E); tie_embeddings: share E with
        the output layer; dropout: on the embeddings and on ``h~``; embedding: an existing embedding
        (V, E) to use (shared with an encoder), else a new one; backend: ``Recurrent``'s;
        input_feeding: feed ``h~_{t-1}`` into the recurrent layer (see the module docstring).
    """

    def __init__(self, vocab_size: int, embedding_size: int, hidden_size: int, key_size: int, cell: str = "lstm",
                 num_layers: int = 1, attention: str = "general", attentional_size: int | None = None,
                 tie_embeddings: bool = True, dropout: float = 0.0, embedding: nn.Embedding | None = None,
                 backend: str = "auto", input_feeding: bool = True) -> None:
        super().__init__()
        width = attentional_size or embedding_size
        if tie_embeddings and width != embedding_size:
            raise ValueError(f"tied embeddings need attentional_size = embedding_size, got {width}, {embedding_size}")
        self.vocab_size, self.embedding_size, self.attentional_size = vocab_size, embedding_size, width
        self.embedding = embedding if embedding is not None else nn.Embedding(vocab_size, embedding_size)
        self.input_feeding = input_feeding
        self.rnn = Recurrent(cell, embedding_size + width * input_feeding, hidden_size, num_layers, backend=backend)
        self.attention = make_attention(attention, hidden_size, key_size)
        self.combine = nn.Linear(key_size + hidden_size, width, bias=False)
        self.out = nn.Linear(width, vocab_size)
        if tie_embeddings:
            self.out.weight = self.embedding.weight
        self.drop = Dropout(dropout)

    def state_sizes(self) -> tuple[int, ...]:
        """The width of each recurrent state component (the LSTM: (h, c))."""
        return tuple(self.rnn.cells[0].state_sizes())

    def prepare(self, keys: Tensor, mask: Tensor) -> Memory:
        """The source as the steps read it: ``keys`` (B, S, K), ``mask`` (B, S)."""
        return Memory(keys, self.attention.prepare(keys), mask)

    def step(self, tokens: Tensor, state: DecoderState, memory: Memory) -> tuple[Tensor, DecoderState, Tensor]:
        """One target position: ``tokens`` (B,) -> ``(logits (B, V), state, attention weights (B, S))``."""
        x = self.drop(self.embedding(tokens))
        if self.input_feeding:
            x = torch.cat([x, state.feed], -1)
        h, rnn_state = self.rnn.step(x, state.rnn)
        context, weights = self.attention(h, memory.keys, memory.mask, prepared=memory.prepared)
        feed = torch.tanh(self.combine(torch.cat([context, h], -1)))
        return self.out(self.drop(feed)), DecoderState(rnn_state, feed), weights

    def forward(self, targets_in: Tensor, state: DecoderState, memory: Memory,
                sampling: float = 0.0) -> tuple[Tensor, DecoderState]:
        """Teacher forcing over ``targets_in`` (T, B) (BOS first) -> ``(logits (T, B, V), final state)``.

        ``sampling``: the probability, per row and step, of feeding the model's own previous argmax
        instead of the reference token (scheduled sampling; training only). Without input feeding and
        sampling, the whole target in one call; the final state is then that of the last position of
        the padded target (as the step loop's)."""
        if not self.input_feeding and not (sampling > 0 and self.training):
            h, rnn_state = self.rnn(self.drop(self.embedding(targets_in)), state.rnn)
            queries = h.transpose(0, 1)  # (B, T, H)
            context, _ = self.attention(queries, memory.keys, memory.mask, prepared=memory.prepared)
            feed = torch.tanh(self.combine(torch.cat([context, queries], -1)))
            logits_bt = self.out(self.drop(feed))
            return logits_bt.transpose(0, 1), DecoderState(rnn_state, feed[:, -1])
        logits = []
        prev: Tensor | None = None
        for t in range(targets_in.shape[0]):
            tokens = targets_in[t]
            if sampling > 0 and self.training and prev is not None:
                own = prev.argmax(-1)
                use_own = torch.rand(tokens.shape, device=tokens.device) < sampling
                tokens = torch.where(use_own, own, tokens)
            prev, state, _ = self.step(tokens, state, memory)
            logits.append(prev)
        return torch.stack(logits), state
