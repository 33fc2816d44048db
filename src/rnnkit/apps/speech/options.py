"""``rnnkit speech train``'s task options (saved as config.json's ``task``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rnnkit.cells.registry import cell_names
from rnnkit.errors import UserError
from rnnkit.validation import check_fields, opt

MODES = ("offline", "streaming")
ARCHS = ("rnn", "transformer")

#: the speech app's defaults for the shared training options (flags and --config override them)
TRAIN_DEFAULTS: dict[str, Any] = {"batch_size": 32, "lr": 2e-3, "clip_norm": 5.0, "max_epochs": 40,
                                  "schedule": "cosine", "min_lr": 1e-4, "warmup_steps": 100,
                                  "log_every_n_steps": 20, "tensorboard": False}


@dataclass
class SpeechConfig:
    mode: str = opt("offline", choices=MODES, help="offline: bidirectional; streaming: unidirectional, causal")
    arch: str = opt("rnn", choices=ARCHS, help="transformer: offline baseline of matched parameter count")
    cell: str = opt("lstm", choices=cell_names)
    hidden: int = opt(256, min=1, max=8192, help="units per direction")
    layers: int = opt(3, min=1, max=64)
    channels: int = opt(32, min=1, max=1024, help="front-end convolution channels")
    n_mels: int = opt(40, min=8, max=256)
    norm: str = opt("global", choices=("global", "utterance"), help="utterance: offline only")
    dropout: float = opt(0.1, min=0, lt=1)
    heads: int = opt(4, min=1, max=64, help="transformer")
    transformer_layers: int = opt(4, min=1, max=64, help="transformer")
    spec_augment: bool = opt(True)
    freq_masks: int = opt(2, min=0, max=10)
    freq_width: int = opt(8, min=0, max=256)
    time_masks: int = opt(2, min=0, max=10)
    time_fraction: float = opt(0.05, min=0, max=0.5)
    beam: int = opt(1, min=1, max=100, help="the search used for the end-of-training validation scores")
    minutes: float | None = opt(None, gt=0, help="training time budget")

    def validate(self) -> SpeechConfig:
        check_fields(self, "speech options")
        if self.mode == "streaming" and self.arch != "rnn":
            raise UserError("--mode streaming needs --arch rnn (the Transformer baseline is offline)")
        if self.mode == "streaming" and self.norm != "global":
            raise UserError("--mode streaming needs --norm global (per-utterance statistics need the whole utterance)")
        return self
