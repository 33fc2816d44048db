"""An encoder-decoder with attention: any ``Recurrent`` encoder (bidirectional by default), a bridge
to the decoder's initial state, and :class:`~rnnkit.layers.attention_decoder.AttentionDecoder`.

::

    k_1..k_S, s_enc = Encoder(E_src x_1..x_S)             Recurrent(cell, bidirectional), lengths honoured
    s_0  = tanh(W_b [s_enc(last layer, forward) ; s_enc(last layer, backward)])   per state component,
                                                           the same for every decoder layer
    h~_0 = 0

Time-major token ids ``(T, B)`` as the rest of rnnkit; ``pad_id`` marks padding in the source.
The encoder's width per direction is ``hidden_size / directions``, so the keys are ``hidden_size`` wide.
The interface the search functions use (:mod:`rnnkit.layers.seq2seq_search`): :meth:`encode`,
``decoder.step`` and the ``select`` methods of the state and memory.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from rnnkit.layers.attention_decoder import AttentionDecoder, DecoderState, Memory
from rnnkit.layers.dropout import Dropout
from rnnkit.layers.recurrent import Recurrent

__all__ = ["Seq2Seq"]


class Seq2Seq(nn.Module):
    """Args:
        vocab_size: V of the target (and source, when ``src_vocab_size`` is None: a joint vocabulary).
        embedding_size, hidden_size: E and H; cell: any rnnkit cell family (encoder and decoder);
        encoder_layers, decoder_layers; bidirectional: the encoder; attention: "additive", "general",
        "dot"; tie_embeddings: the decoder's output layer shares its embedding; share_embeddings: the
        source and target embeddings are one (joint vocabulary only); dropout: on embeddings, between
        encoder layers and on the attentional vector; pad_id: the padding token; input_feeding: the
        decoder's (:class:`~rnnkit.layers.attention_decoder.AttentionDecoder`).
    """

    def __init__(self, vocab_size: int, embedding_size: int = 256, hidden_size: int = 256, cell: str = "lstm",
                 encoder_layers: int = 1, decoder_layers: int = 1, bidirectional: bool = True,
                 attention: str = "general", tie_embeddings: bool = True, share_embeddings: bool = True,
                 dropout: float = 0.1, pad_id: int = 0, src_vocab_size: int | None = None,
                 backend: str = "auto", input_feeding: bool = True) -> None:
        super().__init__()
        self.cfg: dict[str, Any] = {
            "vocab_size": vocab_size, "embedding_size": embedding_size, "hidden_size": hidden_size, "cell": cell,
            "encoder_layers": encoder_layers, "decoder_layers": decoder_layers, "bidirectional": bidirectional,
            "attention": attention, "tie_embeddings": tie_embeddings, "share_embeddings": share_embeddings,
            "dropout": dropout, "pad_id": pad_id, "src_vocab_size": src_vocab_size, "backend": backend,
            "input_feeding": input_feeding}
        D = 2 if bidirectional else 1
        if hidden_size % D:
            raise ValueError(f"a bidirectional encoder needs an even hidden_size, got {hidden_size}")
        if share_embeddings and src_vocab_size not in (None, vocab_size):
            raise ValueError("share_embeddings needs one joint vocabulary (src_vocab_size None)")
        self.pad_id, self.directions = pad_id, D
        self.tgt_embedding = nn.Embedding(vocab_size, embedding_size)
        self.src_embedding = (self.tgt_embedding if share_embeddings
                              else nn.Embedding(src_vocab_size or vocab_size, embedding_size))
        self.encoder = Recurrent(cell, embedding_size, hidden_size // D, encoder_layers, bidirectional=bidirectional,
                                 dropout=dropout if encoder_layers > 1 else 0.0, backend=backend)
        self.decoder = AttentionDecoder(vocab_size, embedding_size, hidden_size, hidden_size, cell, decoder_layers,
                                        attention, tie_embeddings=tie_embeddings, dropout=dropout,
                                        embedding=self.tgt_embedding, backend=backend,
                                        input_feeding=input_feeding)
        enc_sizes = self.encoder.cells[0].state_sizes()
        self.bridge = nn.ModuleList(nn.Linear(D * n_enc, n_dec)
                                    for n_enc, n_dec in zip(enc_sizes, self.decoder.state_sizes(), strict=True))
        self.drop = Dropout(dropout)
        nn.init.normal_(self.tgt_embedding.weight, std=embedding_size ** -0.5)

    def get_config(self) -> dict[str, Any]:
        return dict(self.cfg)

    def encode(self, src: Tensor, lengths: Tensor) -> tuple[Memory, DecoderState]:
        """``src`` (S, B) token ids, ``lengths`` (B,) -> the memory and the decoder's initial state."""
        x = self.drop(self.src_embedding(src))
        keys, final = self.encoder(x, lengths=lengths.cpu())
        return self.start(keys, final, lengths)

    def start(self, keys: Tensor, final: Tensor | tuple[Tensor, ...], lengths: Tensor) -> tuple[Memory, DecoderState]:
        """The memory and the decoder's initial state from the encoder's outputs ``keys`` (S, B, K) and its
        final state (components (layers x directions, B, n), as ``Recurrent`` and torch.nn return them)."""
        comps = final if isinstance(final, tuple) else (final,)
        L, D, B = self.decoder.rnn.num_layers, self.directions, keys.shape[1]
        init = []
        for comp, bridge in zip(comps, self.bridge, strict=True):
            last = comp[-D:].transpose(0, 1).reshape(B, -1)  # the last layer's directions, side by side
            init.append(torch.tanh(bridge(last)).unsqueeze(0).expand(L, -1, -1).contiguous())
        rnn_state = tuple(init) if len(init) > 1 else init[0]
        mask = torch.arange(keys.shape[0], device=keys.device)[None, :] < lengths.to(keys.device)[:, None]
        memory = self.decoder.prepare(keys.transpose(0, 1), mask)
        feed = keys.new_zeros(B, self.decoder.attentional_size)
        return memory, DecoderState(rnn_state, feed)

    def forward(self, src: Tensor, lengths: Tensor, targets_in: Tensor, sampling: float = 0.0) -> Tensor:
        """Teacher-forced logits (T, B, V) for ``targets_in`` (T, B), BOS first."""
        memory, state = self.encode(src, lengths)
        return self.decoder(targets_in, state, memory, sampling)[0]
