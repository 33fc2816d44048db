"""The Transformer CTC baseline (``--arch transformer``), registered as ``speech.transformer_ctc``.

The same front end (symmetric) and output layer as the offline recurrent model, with a pre-norm
Transformer encoder (sinusoidal positions, padding masked) in between. :func:`matched_width` picks the
model width whose parameter count is closest to a recurrent model's, for a comparison at equal size.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from rnnkit.apps.speech.features import length_mask
from rnnkit.apps.speech.frontend import ConvSubsampling
from rnnkit.apps.speech.model import SpeechFeatures, check_int
from rnnkit.apps.speech.vocab import ALPHABET
from rnnkit.io.registry import register_model

MODEL_NAME = "speech.transformer_ctc"


def sinusoids(T: int, d: int) -> Tensor:
    pos = torch.arange(T, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    pe = torch.zeros(T, d)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)[:, : d // 2]
    return pe


class TransformerCTC(SpeechFeatures):
    def __init__(self, d_model: int = 256, heads: int = 4, ff: int = 1024, layers: int = 4, channels: int = 32,
                 n_mels: int = 40, sample_rate: int = 16000, n_fft: int = 400, hop: int = 160, norm: str = "global",
                 dropout: float = 0.1, alphabet: str = ALPHABET) -> None:
        super().__init__()
        self._init_features(n_mels, sample_rate, n_fft, hop, norm, alphabet)
        for name, value, hi in (("d_model", d_model, 8192), ("heads", heads, 64), ("ff", ff, 32768),
                                ("layers", layers, 64), ("channels", channels, 1024)):
            check_int(name, value, 1, hi)
        if not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ValueError("dropout must be in [0, 1)")
        if d_model % heads or d_model % 2:
            raise ValueError(f"d_model ({d_model}) must be even and a multiple of heads ({heads})")
        self.d_model, self.heads, self.ff, self.layers, self.channels = d_model, heads, ff, layers, channels
        self.dropout_p = dropout
        self.frontend = ConvSubsampling(n_mels, channels, d_model, causal=False)
        layer = nn.TransformerEncoderLayer(d_model, heads, ff, dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(d_model, self.vocab_size)

    streaming = False
    bidirectional = True

    def get_config(self) -> dict[str, Any]:
        return {"d_model": self.d_model, "heads": self.heads, "ff": self.ff, "layers": self.layers,
                "channels": self.channels, "n_mels": self.n_mels, "sample_rate": self.sample_rate,
                "n_fft": self.n_fft, "hop": self.hop, "norm": self.norm, "dropout": self.dropout_p,
                "alphabet": self.alphabet}

    def forward(self, feats: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        x, out_lengths = self.frontend(self.normalize(feats, lengths), lengths)
        x = x * math.sqrt(self.d_model) + sinusoids(x.shape[1], self.d_model).to(x)
        pad = ~length_mask(out_lengths.clamp(min=1), x.shape[1])
        y = self.encoder(x, src_key_padding_mask=pad)
        return torch.log_softmax(self.out(self.drop(y)), dim=-1), out_lengths


register_model(MODEL_NAME, TransformerCTC)


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def matched_width(target: int, heads: int, layers: int, channels: int, n_mels: int) -> tuple[int, int]:
    """``(d_model, ff = 4 d_model)`` whose parameter count is closest to ``target``."""
    best: tuple[int, int, int] | None = None
    step = math.lcm(heads, 2)
    for d in range(step, 1025, step):
        with torch.device("meta"):
            n = param_count(TransformerCTC(d, heads, 4 * d, layers, channels, n_mels))
        if best is None or abs(n - target) < abs(best[2] - target):
            best = (d, 4 * d, n)
        if n > target:
            break
    assert best is not None
    return best[0], best[1]
