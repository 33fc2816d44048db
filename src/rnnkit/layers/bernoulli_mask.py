"""Bernoulli masks from a counter-based generator, fast on CPU.

Element ``i`` (row-major) of a mask is 1 when the top 32 bits of ``splitmix64(seed + (i + 1) * G)``
(Steele, Lea & Flood 2014, "Fast splittable pseudorandom number generators"; G = 0x9E3779B97F4A7C15)
are below ``floor(p * 2^32)``, else 0. The seed is one draw from torch's default generator, so
``torch.manual_seed`` makes masks reproducible, and every element is independent of the others, so
the C++ extension fills a mask in one vectorised pass over all threads: torch's CPU ``bernoulli_``
draws element after element from a Mersenne twister (~7 ns each, 19 ms of a 210 ms zoneout-LSTM
training step at T=100, B=64, H=256). :func:`bernoulli_mask_reference` is the same formula in torch
ops (the specification the tests hold the C++ to, bit for bit; too slow to use: int64 shifts in
torch are not vectorised). Without the extension, and on other devices, torch's ``bernoulli_`` draws
the mask (the same distribution, other values).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

_GOLDEN = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB


def _int64(v: int) -> int:
    """An unsigned 64-bit constant as the int64 with the same bits (torch's integers are signed)."""
    return v - (1 << 64) if v >= 1 << 63 else v


def _shift_right(z: Tensor, s: int) -> Tensor:
    """Logical right shift of int64 bits (torch's >> is arithmetic: clear the copied sign bits)."""
    return (z >> s) & ((1 << (64 - s)) - 1)


def threshold(p: float) -> int:
    """floor(p * 2^32): a 32-bit draw below it has probability p (to within 2^-32)."""
    return min(1 << 32, max(0, math.floor(p * 2.0**32)))


def bernoulli_mask_reference(shape: tuple[int, ...], p: float, seed: int,
                             dtype: torch.dtype = torch.float32) -> Tensor:
    """The mask of ``seed`` in torch ops (int64 products wrap modulo 2^64, as the C++ does)."""
    n = math.prod(shape)
    z = torch.arange(1, n + 1, dtype=torch.int64) * _int64(_GOLDEN) + _int64(seed % (1 << 64))
    z = (z ^ _shift_right(z, 30)) * _int64(_MIX1)
    z = (z ^ _shift_right(z, 27)) * _int64(_MIX2)
    z = z ^ _shift_right(z, 31)
    return (_shift_right(z, 32) < threshold(p)).to(dtype).view(shape)


def bernoulli_mask(shape: tuple[int, ...], p: float, like: Tensor) -> Tensor:
    """A 0/1 mask of ``shape`` with P(1) = p, in ``like``'s dtype and device."""
    shape = tuple(int(s) for s in shape)
    ext = None
    if like.device.type == "cpu" and like.dtype in (torch.float32, torch.float64):
        from rnnkit._ext import load_extension

        ext, _ = load_extension("fused_cpu")
    if ext is None:
        return like.new_empty(shape).bernoulli_(p)
    seed = int(torch.randint(-(2**63), 2**63 - 1, (), dtype=torch.int64))
    return ext.bernoulli_mask(list(shape), seed, threshold(p), like.dtype)
