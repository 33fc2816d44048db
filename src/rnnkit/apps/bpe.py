"""Byte-level BPE training with HF ``tokenizers``, shared by the text and translate apps."""

from __future__ import annotations


def train_byte_level_bpe(texts: list[str], vocab_size: int, special_tokens: list[str], add_prefix_space: bool):
    """A ``tokenizers.Tokenizer`` trained on ``texts``: byte level, so every text is encodable; the
    whole byte alphabet is in the vocabulary; ``special_tokens`` take the first ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special_tokens, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    return tok
