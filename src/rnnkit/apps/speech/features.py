"""Log-mel filterbank features in torch (``torch.stft``, no torchaudio), normalisation and SpecAugment.

Frames: a periodic Hann window of ``n_fft`` samples every ``hop`` samples, not centred (frame ``t``
covers samples ``[t*hop, t*hop + n_fft)``), so a frame depends only on audio already heard and a
stream computes the same frames as the whole utterance (:mod:`.streaming`). Power spectrum, HTK-mel
triangular filters between ``f_min`` and ``f_max``, ``log(mel + 1e-6)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

LOG_FLOOR = 1e-6


def hz_to_mel(f: float | Tensor) -> float | Tensor:
    if isinstance(f, Tensor):
        return 2595.0 * torch.log10(1.0 + f / 700.0)
    return 2595.0 * math.log10(1.0 + f / 700.0)


def mel_to_hz(m: Tensor) -> Tensor:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(n_freqs: int, sample_rate: int, n_mels: int, f_min: float, f_max: float) -> Tensor:
    """``(n_freqs, n_mels)`` triangular filters on the HTK mel scale (peak 1, not area-normalised)."""
    freqs = torch.linspace(0, sample_rate / 2, n_freqs, dtype=torch.float64)
    mels = torch.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2, dtype=torch.float64)
    edges = mel_to_hz(mels)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    up = (freqs[:, None] - lower[None, :]) / (centre - lower)[None, :]
    down = (upper[None, :] - freqs[:, None]) / (upper - centre)[None, :]
    return torch.clamp(torch.minimum(up, down), min=0.0).to(torch.float32)


def num_frames(n_samples: int, n_fft: int, hop: int) -> int:
    return 0 if n_samples < n_fft else 1 + (n_samples - n_fft) // hop


class LogMel(nn.Module):
    """``(B, N)`` or ``(N,)`` samples -> ``(B, T, n_mels)`` or ``(T, n_mels)`` log-mel energies."""

    def __init__(self, sample_rate: int = 16000, n_fft: int = 400, hop: int = 160, n_mels: int = 40,
                 f_min: float = 20.0, f_max: float | None = None) -> None:
        super().__init__()
        self.sample_rate, self.n_fft, self.hop, self.n_mels = sample_rate, n_fft, hop, n_mels
        self.f_min, self.f_max = f_min, f_max if f_max is not None else sample_rate / 2
        self.register_buffer("window", torch.hann_window(n_fft, periodic=True), persistent=False)
        self.register_buffer("fbank", mel_filterbank(n_fft // 2 + 1, sample_rate, n_mels, self.f_min, self.f_max),
                             persistent=False)

    def forward(self, wave: Tensor) -> Tensor:
        single = wave.dim() == 1
        x = wave[None] if single else wave
        if x.shape[-1] < self.n_fft:
            out = x.new_zeros(x.shape[0], 0, self.n_mels)
        else:
            spec = torch.stft(x, self.n_fft, self.hop, self.n_fft, self.window, center=False, return_complex=True)
            power = spec.real.square() + spec.imag.square()  # (B, F, T)
            out = torch.log(power.transpose(1, 2) @ self.fbank + LOG_FLOOR)
        return out[0] if single else out

    def frames(self, n_samples: int) -> int:
        return num_frames(n_samples, self.n_fft, self.hop)


def length_mask(lengths: Tensor, T: int) -> Tensor:
    """``(B, T)`` True where a frame is inside its utterance."""
    return torch.arange(T, device=lengths.device)[None, :] < lengths[:, None]


def normalize_utterance(feats: Tensor, lengths: Tensor) -> Tensor:
    """Each utterance's features minus their mean over its frames, divided by their standard
    deviation (per mel bin); frames past an utterance's length are set to 0."""
    mask = length_mask(lengths, feats.shape[1]).unsqueeze(-1).to(feats.dtype)
    n = mask.sum(1, keepdim=True).clamp(min=1.0)
    mean = (feats * mask).sum(1, keepdim=True) / n
    var = ((feats - mean).square() * mask).sum(1, keepdim=True) / n
    return (feats - mean) / torch.sqrt(var + 1e-5) * mask


def normalize_global(feats: Tensor, lengths: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """``(feats - mean) / std`` with fixed statistics (streamable); frames past a length set to 0."""
    mask = length_mask(lengths, feats.shape[1]).unsqueeze(-1).to(feats.dtype)
    return (feats - mean) / std * mask


def spec_augment(feats: Tensor, lengths: Tensor, freq_masks: int, freq_width: int, time_masks: int,
                 time_fraction: float, generator: torch.Generator | None = None,
                 fill: Tensor | float = 0.0) -> Tensor:
    """SpecAugment (Park et al. 2019) without time warping: per utterance, ``freq_masks`` bands of up
    to ``freq_width`` mel bins and ``time_masks`` spans of up to ``time_fraction`` of its frames set
    to ``fill`` (per mel bin: the training mean, which global normalisation maps to 0)."""
    B, _, F = feats.shape
    keep = torch.ones_like(feats)
    for b in range(B):
        n = int(lengths[b])
        for _ in range(freq_masks):
            w = int(torch.randint(0, freq_width + 1, (1,), generator=generator))
            f0 = int(torch.randint(0, max(1, F - w + 1), (1,), generator=generator))
            keep[b, :, f0:f0 + w] = 0
        width = int(time_fraction * n)
        for _ in range(time_masks):
            w = int(torch.randint(0, width + 1, (1,), generator=generator))
            t0 = int(torch.randint(0, max(1, n - w + 1), (1,), generator=generator))
            keep[b, t0:t0 + w, :] = 0
    return feats * keep + (1 - keep) * fill
