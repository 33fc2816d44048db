"""``rnnkit translate train``'s task options (saved as config.json's ``task``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rnnkit.errors import UserError

TOKENIZERS = ("bpe", "bpe-separate", "char", "g2p")
ARCHS = ("rnn", "transformer")
ATTENTIONS = ("additive", "general", "dot")
TOO_LONG = ("skip", "error")

#: the translate app's defaults for the shared training options (flags and --config override them)
TRAIN_DEFAULTS: dict[str, Any] = {"batch_size": 64, "lr": 2e-3, "clip_norm": 1.0, "max_epochs": 20,
                                  "log_every_n_steps": 20}


@dataclass
class TranslateConfig:
    header: bool = True  # the TSV files' first line is a header (de<TAB>en)
    tokenizer: str = "bpe"  # bpe (joint) | bpe-separate (one per side) | char | g2p (characters -> phonemes)
    bpe_vocab: int = 4000
    max_len: int = 100  # tokens per side, BOS/EOS not counted
    too_long: str = "skip"  # training pairs over max_len: skip (counted) | error
    valid_fraction: float = 0.05  # held out of the training file when no validation file is given
    split_seed: int = 0
    arch: str = "rnn"  # rnn (attention encoder-decoder) | transformer (matched to the rnn's parameter count)
    heads: int = 4  # transformer
    transformer_layers: int = 2  # transformer: encoder layers, and as many decoder layers
    cell: str = "lstm"
    embedding_size: int = 256
    hidden: int = 256
    encoder_layers: int = 1
    decoder_layers: int = 1
    bidirectional: bool = True
    attention: str = "general"  # additive (Bahdanau) | general | dot (Luong)
    input_feeding: bool = True  # the last attentional vector feeds the decoder's next step (Luong et al.)
    tie_embeddings: bool = True
    share_embeddings: bool = True
    dropout: float = 0.2
    label_smoothing: float = 0.1
    sampling: float = 0.0  # scheduled sampling: probability of feeding the model's own previous token
    beam: int = 5  # the search used for the end-of-training scores
    alpha: float = 0.6  # GNMT length penalty
    max_len_ratio: float = 2.0
    minutes: float | None = None  # training time budget

    def validate(self) -> TranslateConfig:
        from rnnkit.cells.registry import cell_names

        if self.tokenizer not in TOKENIZERS:
            raise UserError(f"unknown tokenizer {self.tokenizer!r}; choose one of: {', '.join(TOKENIZERS)}")
        if self.arch not in ARCHS:
            raise UserError(f"unknown arch {self.arch!r}; choose one of: {', '.join(ARCHS)}")
        if self.arch == "transformer" and self.sampling:
            raise UserError("scheduled sampling (sampling) is for --arch rnn; the transformer trains on references")
        if self.attention not in ATTENTIONS:
            raise UserError(f"unknown attention {self.attention!r}; choose one of: {', '.join(ATTENTIONS)}")
        if self.too_long not in TOO_LONG:
            raise UserError(f"too_long must be skip or error, got {self.too_long!r}")
        if self.cell not in cell_names():
            raise UserError(f"unknown cell {self.cell!r}; choose one of: {', '.join(cell_names())}")
        for name in ("embedding_size", "hidden", "encoder_layers", "decoder_layers", "max_len", "beam", "heads",
                     "transformer_layers"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.bidirectional and self.hidden % 2:
            raise UserError(f"a bidirectional encoder splits hidden in two: give an even --hidden, got {self.hidden}")
        if self.bpe_vocab < 300:
            raise UserError(f"bpe_vocab must be at least 300 (the 256 bytes, 4 specials and merges), got "
                            f"{self.bpe_vocab}")
        for name in ("dropout", "label_smoothing", "sampling"):
            if not 0 <= getattr(self, name) < 1:
                raise UserError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0 < self.valid_fraction < 1:
            raise UserError(f"valid_fraction must be in (0, 1), got {self.valid_fraction}")
        if self.max_len_ratio <= 0 or self.alpha < 0:
            raise UserError("max_len_ratio must be positive and alpha at least 0")
        if self.minutes is not None and self.minutes <= 0:
            raise UserError(f"minutes must be positive, got {self.minutes}")
        return self
