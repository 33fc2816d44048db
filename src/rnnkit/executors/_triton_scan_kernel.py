"""Triton kernel of :mod:`rnnkit.executors.triton_scan` (imported lazily: it imports triton, and
``@triton.jit`` reads ``TRITON_INTERPRET`` when this module is imported)."""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def combine(a1, b1, a2, b2):
    """(a1, b1) then (a2, b2): h -> a2 (a1 h + b1) + b2."""
    return a1 * a2, a2 * b1 + b2


@triton.jit
def linear_scan_kernel(
    a_ptr, b_ptr, h0_ptr, h_ptr, hlast_ptr, T, N, a_shift,
    REVERSE: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_N: tl.constexpr,
):
    pid = tl.program_id(0)
    cols = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    cmask = cols < N
    carry = tl.load(h0_ptr + cols, mask=cmask, other=0.0)
    rows = tl.arange(0, BLOCK_T)
    for c in range(0, tl.cdiv(T, BLOCK_T)):
        s = c * BLOCK_T + rows  # processing order
        if REVERSE:  # noqa: SIM108 (a constexpr branch)
            t = T - 1 - s
        else:
            t = s
        m = (s < T)[:, None] & cmask[None, :]
        ta = t + a_shift
        inside = ((ta >= 0) & (ta < T))[:, None] & m
        # a shifted past the ends is 1 (the carry passes); padding rows are the identity (1, 0)
        a = tl.load(a_ptr + ta[:, None] * N + cols[None, :], mask=inside, other=1.0)
        a = tl.where(m, a, 1.0)
        b = tl.load(b_ptr + t[:, None] * N + cols[None, :], mask=m, other=0.0)
        acc_a, acc_b = tl.associative_scan((a, b), 0, combine)
        h = acc_a * carry[None, :] + acc_b
        tl.store(h_ptr + t[:, None] * N + cols[None, :], h, mask=m)
        carry = tl.sum(tl.where((rows == BLOCK_T - 1)[:, None], h, 0.0), axis=0)
    tl.store(hlast_ptr + cols, carry, mask=cmask)
