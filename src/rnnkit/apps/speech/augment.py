"""Augmentation of synthesised audio: additive noise at a signal-to-noise ratio and a
reverberation-like filter (an exponentially decaying noise impulse response, convolved by FFT)."""

from __future__ import annotations

import numpy as np


def add_noise(x: np.ndarray, snr_db: float, rng: np.random.Generator, colour: str = "white") -> np.ndarray:
    """``x`` plus white or pink (1/f power) noise at ``snr_db`` dB below its mean power."""
    noise = rng.standard_normal(x.size)
    if colour == "pink":
        spec = np.fft.rfft(noise)
        f = np.arange(spec.size, dtype=np.float64)
        f[0] = 1.0
        noise = np.fft.irfft(spec / np.sqrt(f), n=x.size)
    p_signal = float(np.mean(x.astype(np.float64) ** 2)) + 1e-12
    p_noise = float(np.mean(noise ** 2)) + 1e-12
    scale = np.sqrt(p_signal / (p_noise * 10 ** (snr_db / 10)))
    return (x + scale * noise).astype(np.float32)


def reverb(x: np.ndarray, rate: int, rt60: float, wet: float, rng: np.random.Generator) -> np.ndarray:
    """``x`` through a synthetic room: direct path plus ``wet`` times a decaying noise tail whose energy
    falls 60 dB in ``rt60`` seconds; the peak is kept at most that of ``x``."""
    n = max(1, int(rt60 * rate))
    t = np.arange(n) / rate
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    tail[: int(0.002 * rate)] = 0.0  # the first reflections arrive after ~2 ms
    tail /= np.sqrt(np.sum(tail ** 2)) + 1e-12
    ir = np.zeros(n)
    ir[0] = 1.0
    ir += wet * tail
    size = x.size + n - 1
    nfft = 1 << (size - 1).bit_length()
    y = np.fft.irfft(np.fft.rfft(x, nfft) * np.fft.rfft(ir, nfft), nfft)[: x.size]
    peak_x, peak_y = float(np.max(np.abs(x))) + 1e-12, float(np.max(np.abs(y))) + 1e-12
    return (y * min(1.0, peak_x / peak_y)).astype(np.float32)
