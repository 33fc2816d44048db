"""The translate app's model: :class:`rnnkit.layers.seq2seq.Seq2Seq`, registered for rnnkit.save/load."""

from __future__ import annotations

from rnnkit.io.registry import register_model
from rnnkit.layers.seq2seq import Seq2Seq

MODEL_NAME = "translate.seq2seq"
register_model(MODEL_NAME, Seq2Seq)


def build(cfg, vocab_size: int) -> Seq2Seq:
    """The model ``cfg`` (a TranslateConfig) describes, for a joint vocabulary of ``vocab_size``."""
    from rnnkit.apps.translate.tokenizer import PAD

    return Seq2Seq(vocab_size, cfg.embedding_size, cfg.hidden, cfg.cell, cfg.encoder_layers, cfg.decoder_layers,
                   cfg.bidirectional, cfg.attention, cfg.tie_embeddings, cfg.share_embeddings, cfg.dropout, PAD)


def param_count(model) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
