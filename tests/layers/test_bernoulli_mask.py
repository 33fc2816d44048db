"""The counter-based Bernoulli masks: the C++ pass equals the torch specification bit for bit, the
draws have the asked probability and no visible structure, and torch.manual_seed reproduces them."""

from __future__ import annotations

import pytest
import torch

from rnnkit._ext import load_extension
from rnnkit.layers.bernoulli_mask import bernoulli_mask, bernoulli_mask_reference, threshold


def _ext():
    ext, why = load_extension("fused_cpu")
    if ext is None:
        pytest.fail(f"fused_cpu extension unavailable: {why}")
    return ext


@pytest.mark.parametrize("p", [0.0, 1e-3, 0.1, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("seed", [0, 1, -7, 2**62 + 3, -(2**63)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_extension_equals_the_specification(p, seed, dtype):
    shape = (7, 5, 131)  # not a multiple of any vector width
    fast = _ext().bernoulli_mask(list(shape), seed, threshold(p), dtype)
    ref = bernoulli_mask_reference(shape, p, seed, dtype)
    assert fast.dtype == dtype and fast.shape == shape
    assert torch.equal(fast, ref)


def test_threshold_edges():
    assert threshold(0.0) == 0
    assert threshold(1.0) == 2**32
    assert threshold(0.5) == 2**31


@pytest.mark.parametrize("p", [0.05, 0.3, 0.5])
def test_probability_and_independence(p):
    m = bernoulli_mask((200, 64, 128), p, torch.empty(0))
    n = m.numel()
    assert set(m.unique().tolist()) <= {0.0, 1.0}
    assert abs(m.mean().item() - p) < 5 * (p * (1 - p) / n) ** 0.5
    flat = m.flatten()
    # neighbours (consecutive counters) and rows 128 apart (the next batch row) are uncorrelated
    for lag in (1, 2, 128):
        both = (flat[:-lag] * flat[lag:]).mean().item()
        assert abs(both - p * p) < 6 * (p * p * (1 - p * p) / n) ** 0.5, lag


def test_seeded_by_torch_generator():
    like = torch.empty(0)
    torch.manual_seed(3)
    a = bernoulli_mask((50, 40), 0.3, like)
    b = bernoulli_mask((50, 40), 0.3, like)
    torch.manual_seed(3)
    assert torch.equal(bernoulli_mask((50, 40), 0.3, like), a)
    assert not torch.equal(a, b)


def test_follows_like_dtype():
    assert bernoulli_mask((3, 4), 0.5, torch.empty(0, dtype=torch.float64)).dtype == torch.float64
    assert bernoulli_mask((3, 4), 0.5, torch.empty(0, dtype=torch.bfloat16)).dtype == torch.bfloat16
