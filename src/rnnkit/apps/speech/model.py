"""The recurrent CTC models, registered as ``speech.rnn_ctc`` for rnnkit.save/load.

Log-mel features (:mod:`.features`) -> normalisation -> :class:`~.frontend.ConvSubsampling` (x4 in
time) -> an rnnkit :class:`~rnnkit.layers.recurrent.Recurrent` stack of any cell family -> a linear
layer over blank + the alphabet -> log-softmax, trained with CTC.

- offline (``bidirectional=True``): a symmetric front end and a bidirectional stack;
- streaming (``bidirectional=False``): a causal front end, a unidirectional stack and global feature
  statistics, so every output frame depends only on the audio before it (:mod:`.streaming`).

Normalisation: ``global`` uses the training set's per-bin mean and standard deviation (buffers saved
with the weights), ``utterance`` each utterance's own (offline only: it needs the whole utterance).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from rnnkit.apps.speech.features import LogMel, normalize_global, normalize_utterance
from rnnkit.apps.speech.frontend import ConvSubsampling
from rnnkit.apps.speech.vocab import ALPHABET
from rnnkit.io.registry import register_model
from rnnkit.layers.recurrent import Recurrent

MODEL_NAME = "speech.rnn_ctc"
NORMS = ("global", "utterance")


def check_alphabet(alphabet: Any) -> str:
    if not isinstance(alphabet, str) or not 0 < len(alphabet) <= 256 or len(set(alphabet)) != len(alphabet):
        raise ValueError("alphabet must be a string of 1 to 256 distinct characters")
    return alphabet


def check_int(name: str, value: Any, lo: int, hi: int) -> int:
    """``value`` if it is an int in ``[lo, hi]`` (a saved config is untrusted: no huge or odd sizes)."""
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer from {lo} to {hi}, got {str(value)[:40]}")
    return value


class SpeechFeatures(nn.Module):
    """What both model kinds share: the featuriser, the saved statistics and the normalisation."""

    def _init_features(self, n_mels: int, sample_rate: int, n_fft: int, hop: int, norm: str, alphabet: str) -> None:
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {str(norm)[:40]!r}")
        check_int("n_mels", n_mels, 8, 256)
        check_int("sample_rate", sample_rate, 1000, 192_000)
        check_int("n_fft", n_fft, 16, 8192)
        check_int("hop", hop, 1, n_fft)
        self.n_mels, self.sample_rate, self.n_fft, self.hop, self.norm = n_mels, sample_rate, n_fft, hop, norm
        self.alphabet = check_alphabet(alphabet)
        self.featurizer = LogMel(sample_rate, n_fft, hop, n_mels)
        self.register_buffer("feat_mean", torch.zeros(n_mels))
        self.register_buffer("feat_std", torch.ones(n_mels))

    @property
    def vocab_size(self) -> int:
        return len(self.alphabet) + 1

    def set_statistics(self, mean: Tensor, std: Tensor) -> None:
        with torch.no_grad():
            self.feat_mean.copy_(mean)
            self.feat_std.copy_(std.clamp(min=1e-3))

    def normalize(self, feats: Tensor, lengths: Tensor) -> Tensor:
        if self.norm == "utterance":
            return normalize_utterance(feats, lengths)
        return normalize_global(feats, lengths, self.feat_mean, self.feat_std)

    def transcribe_logprobs(self, wave: Tensor) -> Tensor:
        """``(T', V)`` log-probabilities of one utterance's samples ``(N,)``."""
        feats = self.featurizer(wave)[None]
        out, _ = self(feats, torch.tensor([feats.shape[1]]))
        return out[0]


class RecurrentCTC(SpeechFeatures):
    def __init__(self, cell: str = "lstm", hidden: int = 256, layers: int = 3, bidirectional: bool = True,
                 channels: int = 32, n_mels: int = 40, sample_rate: int = 16000, n_fft: int = 400, hop: int = 160,
                 norm: str = "global", dropout: float = 0.1, alphabet: str = ALPHABET) -> None:
        super().__init__()
        self._init_features(n_mels, sample_rate, n_fft, hop, norm, alphabet)
        check_int("hidden", hidden, 1, 8192)
        check_int("layers", layers, 1, 64)
        check_int("channels", channels, 1, 1024)
        if not isinstance(bidirectional, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ValueError("bidirectional must be true or false and dropout in [0, 1)")
        if not bidirectional and norm != "global":
            raise ValueError("a streaming (unidirectional) model needs norm='global'")
        self.cell, self.hidden, self.layers, self.bidirectional = cell, hidden, layers, bidirectional
        self.channels, self.dropout_p = channels, dropout
        self.frontend = ConvSubsampling(n_mels, channels, hidden, causal=not bidirectional)
        self.rnn = Recurrent(cell, hidden, hidden, layers, batch_first=True, bidirectional=bidirectional,
                             dropout=dropout if layers > 1 else 0.0)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden * (2 if bidirectional else 1), self.vocab_size)

    def get_config(self) -> dict[str, Any]:
        return {"cell": self.cell, "hidden": self.hidden, "layers": self.layers, "bidirectional": self.bidirectional,
                "channels": self.channels, "n_mels": self.n_mels, "sample_rate": self.sample_rate,
                "n_fft": self.n_fft, "hop": self.hop, "norm": self.norm, "dropout": self.dropout_p,
                "alphabet": self.alphabet}

    @property
    def streaming(self) -> bool:
        return not self.bidirectional

    def forward(self, feats: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Raw log-mel ``(B, T, n_mels)`` and their lengths -> ``(B, T', V)`` log-probabilities, ``T'`` lengths."""
        x, out_lengths = self.frontend(self.normalize(feats, lengths), lengths)
        y, _ = self.rnn(x, lengths=out_lengths.clamp(min=1))
        return torch.log_softmax(self.out(self.drop(y)), dim=-1), out_lengths


register_model(MODEL_NAME, RecurrentCTC)
