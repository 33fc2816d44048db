"""The translate app's models, registered for rnnkit.save/load: the attention encoder-decoder
(:class:`rnnkit.layers.seq2seq.Seq2Seq`, ``--arch rnn``) and the Transformer baseline
(:class:`rnnkit.layers.seq2seq_transformer.TransformerSeq2Seq`, ``--arch transformer``), whose width is
chosen so that its parameter count matches the recurrent model the same options describe."""

from __future__ import annotations

import math

import torch
from torch import nn

from rnnkit.io.registry import register_model
from rnnkit.layers.seq2seq import Seq2Seq
from rnnkit.layers.seq2seq_transformer import TransformerSeq2Seq

MODEL_NAME = "translate.seq2seq"
TRANSFORMER_NAME = "translate.transformer"
register_model(MODEL_NAME, Seq2Seq)
register_model(TRANSFORMER_NAME, TransformerSeq2Seq)


def param_count(model: nn.Module) -> int:
    """Distinct parameters (tied weights counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def build_rnn(cfg, vocab_size: int) -> Seq2Seq:
    from rnnkit.apps.translate.tokenizer import PAD

    return Seq2Seq(vocab_size, cfg.embedding_size, cfg.hidden, cfg.cell, cfg.encoder_layers, cfg.decoder_layers,
                   cfg.bidirectional, cfg.attention, cfg.tie_embeddings, cfg.share_embeddings, cfg.dropout, PAD,
                   input_feeding=cfg.input_feeding)


def rnn_param_count(cfg, vocab_size: int) -> int:
    """The parameters of the recurrent model ``cfg`` describes (built on the meta device: no memory)."""
    with torch.device("meta"):
        return param_count(build_rnn(cfg, vocab_size))


def transformer_width(target: int, vocab_size: int, layers: int, heads: int) -> tuple[int, int, int]:
    """``(d_model, ff, parameters)`` of the Transformer with ``layers`` encoder and decoder layers and
    ``heads`` heads whose parameter count is closest to ``target``: d_model (even, a multiple of
    ``heads``) closest with a feed-forward width of 4 d_model, then the feed-forward width moved (by at
    most d_model either way) to take up the rest of the difference."""
    from rnnkit.apps.translate.tokenizer import PAD

    def count(d: int, ff: int) -> int:
        with torch.device("meta"):
            return param_count(TransformerSeq2Seq(vocab_size, d, layers, layers, heads, ff, 0.0, PAD))

    step = math.lcm(heads, 2)
    best = (step, -1)
    for d in range(step, 2049, step):
        n = count(d, 4 * d)
        if best[1] < 0 or abs(n - target) < abs(best[1] - target):
            best = (d, n)
        if n > target:
            break
    d, n = best
    per_ff = 2 * layers * (2 * d + 1)  # each feed-forward unit: a row and a column of two linears, and a bias
    ff = 4 * d + max(-d, min(d, round((target - n) / per_ff)))
    return d, ff, count(d, ff)


def build(cfg, vocab_size: int) -> nn.Module:
    """The model ``cfg`` (a TranslateConfig) describes, for a joint vocabulary of ``vocab_size``."""
    if cfg.arch == "transformer":
        from rnnkit.apps.translate.tokenizer import PAD

        d, ff, _ = transformer_width(rnn_param_count(cfg, vocab_size), vocab_size, cfg.transformer_layers,
                                     cfg.heads)
        return TransformerSeq2Seq(vocab_size, d, cfg.transformer_layers, cfg.transformer_layers, cfg.heads, ff,
                                  cfg.dropout, PAD)
    return build_rnn(cfg, vocab_size)
