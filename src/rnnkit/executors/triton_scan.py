"""The GPU side of the ``scan`` executor: a Triton kernel for the linear recurrence
``h_t = a_t * h_{t-1} + b_t`` over (T, N) channels, parallel in time (a chunked scan).

Each program owns ``BLOCK_N`` channels and walks time in chunks of ``BLOCK_T`` steps; inside a chunk
``tl.associative_scan`` combines the pairs ``(a, b)`` with ``(a1, b1) o (a2, b2) = (a1 a2, a2 b1 + b2)``
in parallel, and the chunk's last state is carried into the next chunk. The scan works on ``(a, b)``
directly, not in log space: with ``a_t`` in [0, 1] (minGRU's ``1 - z_t``, minLSTM's normalised ``f'_t``)
every partial product stays in [0, 1] and there is no division, so long sequences and saturated gates
give no overflow and no NaN (a product that underflows to 0 is the exact forgetting it stands for),
and ``h`` needs no positivity (any initial state and the ``identity`` candidate work).

Backward is the same kernel run the other way: ``G_t = a_{t+1} G_{t+1} + dh_t`` (the gradient of the
whole loss with respect to ``h_t``), loading ``a`` shifted by one step; then ``da_t = G_t h_{t-1}``,
``db_t = G_t``. Forward saves ``a``, ``h`` and ``h0``.

Triton is imported lazily, so ``import rnnkit`` does not need it. Tests run the kernel on CPU with
``TRITON_INTERPRET=1`` (set before triton is first imported, e.g. in a subprocess).
"""

from __future__ import annotations

import os
from functools import cache, partial

import torch
from torch import Tensor

from rnnkit.executors.kernel_function import KernelFunction
from rnnkit.executors.recompute import (
    differentiable_backward_needed,
    recomputed_grads,
    recomputed_jvp,
)

#: dtypes the kernel computes in directly; half precision is computed in float32
_COMPUTE = (torch.float32, torch.float64)


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


@cache
def triton_available() -> str | None:
    """None if Triton can be imported, else the reason."""
    try:
        import triton
        import triton.language  # noqa: F401
    except Exception as exc:  # pragma: no cover - depends on the install
        return f"triton is not importable ({type(exc).__name__}: {exc})"
    return None


@cache
def _kernel():
    import triton

    from rnnkit.executors._triton_scan_kernel import linear_scan_kernel

    return triton, linear_scan_kernel


def _pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def _launch(a: Tensor, b: Tensor, h0: Tensor, reverse: bool, a_shift: int,
            block_t: int | None, block_n: int | None) -> tuple[Tensor, Tensor]:
    """h (T, N) and the last processed state (N,) of the scan; all inputs contiguous, one dtype."""
    triton, kernel = _kernel()
    T, N = a.shape
    h = torch.empty_like(b)
    hlast = torch.empty_like(h0)
    if T == 0:
        return h, h0.clone()
    bn = block_n or min(128, _pow2(N))
    bt = block_t or (16 if interpreting() else 64)
    kernel[(triton.cdiv(N, bn),)](
        a, b, h0, h, hlast, T, N, a_shift, REVERSE=reverse, BLOCK_T=bt, BLOCK_N=bn
    )
    return h, hlast


def sequential_scan(a: Tensor, b: Tensor, h0: Tensor, reverse: bool = False) -> tuple[Tensor, Tensor]:
    """``h_t = a_t * h_{t-1} + b_t`` as a plain PyTorch loop (differentiable to any order): what the
    kernel computes, and what its backward recomputes when autograd records it (double backward)."""
    h = h0
    out = [h0] * a.shape[0]
    for t in range(a.shape[0] - 1, -1, -1) if reverse else range(a.shape[0]):
        h = a[t] * h + b[t]
        out[t] = h
    return (torch.stack(out) if out else b.clone()), h


class _LinearScan(KernelFunction):
    @staticmethod
    def forward(a, b, h0, reverse, block_t, block_n):
        T = a.shape[0]
        a2, b2 = a.reshape(T, -1).contiguous(), b.reshape(T, -1).contiguous()
        h, hlast = _launch(a2, b2, h0.reshape(-1).contiguous(), reverse, 0, block_t, block_n)
        return h.view(a.shape), hlast.view(h0.shape)

    @staticmethod
    def setup_context(ctx, inputs, output):
        a, b, h0, reverse, block_t, block_n = inputs
        ctx.reverse, ctx.blocks = reverse, (block_t, block_n)
        ctx.set_materialize_grads(False)  # backward makes what it needs of a missing gradient
        ctx.save_for_backward(a, b, h0, output[0])
        ctx.save_for_forward(a, b, h0)

    @staticmethod
    def backward(ctx, dh, dhlast):
        a_in, b_in, h0, h_out = ctx.saved_tensors
        reverse = ctx.reverse
        if differentiable_backward_needed(dh, dhlast):
            grads = recomputed_grads(partial(sequential_scan, reverse=reverse),
                                     (a_in, b_in, h0), ctx.needs_input_grad[:3], (dh, dhlast))
            return (*grads, None, None, None)
        shape = a_in.shape
        T = shape[0]
        a, h = a_in.reshape(T, -1).contiguous(), h_out.reshape(T, -1)
        g = torch.zeros_like(h) if dh is None else dh.reshape(T, -1).contiguous()
        carry = (torch.zeros_like(h0) if dhlast is None else dhlast).reshape(-1).contiguous()
        # G_t = a_{t+1} G_{t+1} + g_t (forward direction; mirrored for reverse), G at the last
        # processed step also receives the final state's gradient (the carry)
        G, _ = _launch(a, g, carry, not reverse, -1 if reverse else 1, *ctx.blocks)
        h0f = h0.reshape(1, -1)
        if reverse:
            prev = torch.cat([h[1:], h0f]) if T > 1 else h0f
            first = T - 1
        else:
            prev = torch.cat([h0f, h[:-1]]) if T > 1 else h0f
            first = 0
        da = G * prev
        dh0 = (a[first] * G[first]).view(h0.shape)
        return da.view(shape), G.view(shape), dh0, None, None, None

    @staticmethod
    def jvp(ctx, da, db, dh0, *_):
        return recomputed_jvp(partial(sequential_scan, reverse=ctx.reverse), ctx.saved_tensors,
                              (da, db, dh0))


def linear_scan(
    a: Tensor, b: Tensor, h0: Tensor, reverse: bool = False,
    block_t: int | None = None, block_n: int | None = None,
) -> tuple[Tensor, Tensor]:
    """``h_t = a_t * h_{t-1} + b_t`` over dim 0 of ``a, b`` (T, ...), from ``h0`` (...); in reverse,
    t runs from T-1 down. Returns every ``h_t`` and the last state. Differentiable in all three."""
    dtype = a.dtype
    if dtype not in _COMPUTE:
        a, b, h0 = a.float(), b.float(), h0.float()
    h, last = _LinearScan.apply(a, b, h0, bool(reverse), block_t, block_n)
    return h.to(dtype), last.to(dtype)
