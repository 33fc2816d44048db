"""Speech features: the torch log-mel filterbank against a NumPy reference written from the formulas,
normalisation, SpecAugment (issue #16)."""

import numpy as np
import torch

from rnnkit.apps.speech.features import LogMel, length_mask, normalize_global, normalize_utterance, spec_augment

torch.set_num_threads(1)


def _numpy_logmel(x: np.ndarray, rate: int, n_fft: int, hop: int, n_mels: int, f_min: float) -> np.ndarray:
    """Frames [t*hop, t*hop+n_fft), periodic Hann, |rfft|^2, HTK-mel triangles (peak 1), log(. + 1e-6)."""
    n = 1 + (len(x) - n_fft) // hop
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    frames = np.stack([x[t * hop:t * hop + n_fft] * window for t in range(n)])
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    hz = lambda m: 700 * (10 ** (m / 2595) - 1)  # noqa: E731
    edges = hz(np.linspace(mel(f_min), mel(rate / 2), n_mels + 2))
    freqs = np.linspace(0, rate / 2, n_fft // 2 + 1)
    fb = np.zeros((len(freqs), n_mels))
    for m in range(n_mels):
        lo, c, hi = edges[m], edges[m + 1], edges[m + 2]
        for k, f in enumerate(freqs):
            if lo < f <= c:
                fb[k, m] = (f - lo) / (c - lo)
            elif c < f < hi:
                fb[k, m] = (hi - f) / (hi - c)
    return np.log(power @ fb + 1e-6)


def test_logmel_matches_numpy_reference():
    rng = np.random.default_rng(0)
    t = np.arange(8000) / 16000
    x = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float64)
    ref = _numpy_logmel(x, 16000, 400, 160, 40, 20.0)
    got = LogMel(16000, 400, 160, 40, 20.0)(torch.from_numpy(x).float()).double().numpy()
    assert got.shape == ref.shape == (1 + (8000 - 400) // 160, 40)
    # float32 against float64: log energies agree to ~1e-3 where there is energy
    assert np.max(np.abs(got - ref)) < 2e-3
    assert np.argmax(got.mean(0)) == np.argmax(ref.mean(0))


def test_logmel_batch_and_short_input():
    fe = LogMel(n_mels=24)
    x = torch.randn(3, 4000)
    assert torch.allclose(fe(x)[1], fe(x[1]), atol=1e-5)
    assert fe(torch.randn(100)).shape == (0, 24) and fe.frames(100) == 0 and fe.frames(400) == 1


def test_normalisation_and_padding():
    feats = torch.randn(2, 10, 5) * 3 + 7
    lengths = torch.tensor([10, 6])
    out = normalize_utterance(feats, lengths)
    assert torch.allclose(out[0].mean(0), torch.zeros(5), atol=1e-5)
    assert torch.allclose(out[1, :6].std(0, unbiased=False), torch.ones(5), atol=1e-3)
    assert torch.all(out[1, 6:] == 0)
    alone = normalize_utterance(feats[1:, :6], lengths[1:])
    assert torch.allclose(alone[0], out[1, :6], atol=1e-5)
    g = normalize_global(feats, lengths, torch.full((5,), 7.0), torch.full((5,), 3.0))
    assert torch.allclose(g[0], (feats[0] - 7) / 3) and torch.all(g[1, 6:] == 0)
    assert length_mask(lengths, 10).sum().item() == 16


def test_spec_augment_masks_within_limits():
    feats = torch.randn(4, 50, 20)
    lengths = torch.tensor([50, 40, 30, 20])
    fill = torch.full((20,), 123.0)
    g = torch.Generator().manual_seed(0)
    out = spec_augment(feats, lengths, 2, 5, 2, 0.1, generator=g, fill=fill)
    masked = out == 123.0
    assert masked.any()
    for b in range(4):
        # frequency bands: at most 2 x 5 bins fully masked over time
        full_bins = masked[b].all(0).sum().item()
        assert full_bins <= 10
        full_frames = masked[b].all(1).sum().item()
        assert full_frames <= 2 * int(0.1 * lengths[b]) + (20 if full_bins == 20 else 0)
    assert torch.equal(out[~masked], feats[~masked])
    assert torch.equal(spec_augment(feats, lengths, 0, 5, 0, 0.1), feats)
