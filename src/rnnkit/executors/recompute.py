"""Differentiable backward by recomputation: how the C++ kernels' autograd Functions support
double backward (gradient penalties, MAML, Hessian-vector products).

A kernel's hand-written backward returns plain tensors: autograd cannot differentiate through it a
second time, and ``torch.func.vmap`` cannot batch it. When the backward is asked to build a graph
(``create_graph=True``: autograd runs the Function's backward in grad mode, as ``torch.func``
transforms do too) or receives batched gradients, the Function instead recomputes its forward with
differentiable PyTorch ops (the reference executor's loop over ``cell.step``) from the saved
*inputs* and returns the vector-Jacobian product of that: the same first-order gradients (the
kernels match the reference), through which autograd takes the second order, as torch.nn's.
Ordinary training (``loss.backward()``) never takes this path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor


def differentiable_backward_needed(*grad_outputs: Tensor | None) -> bool:
    """Inside a Function's backward: True when autograd records it (``create_graph=True``), or when
    ``torch.func.vmap`` batches the incoming gradients (``jacrev``, per-sample gradients): the C++
    kernels have no batching rule, the recomputation is plain PyTorch."""
    return torch.is_grad_enabled() or any(
        g is not None and is_batched(g) for g in grad_outputs)


def tracked(t: Tensor) -> bool:
    """Whether a gradient may be taken through ``t``: it requires grad, or a ``torch.func``
    transform wraps it (``grad``/``vjp``/``jacrev`` track their inputs without ``requires_grad``)."""
    return t.requires_grad or torch._C._functorch.is_functorch_wrapped_tensor(t)


def is_batched(t: Tensor) -> bool:
    """Whether ``torch.func.vmap`` batches ``t`` at any level of ``torch.func`` wrapping (as in
    ``vmap(grad(f))``): the C++ kernels cannot read it."""
    functorch = torch._C._functorch
    while functorch.is_functorch_wrapped_tensor(t):
        if functorch.is_batchedtensor(t):
            return True
        t = functorch.get_unwrapped(t)
    return False


def recomputed_grads(
    recompute: Callable[..., Sequence[Tensor | None]],
    inputs: Sequence[Tensor | None],
    needs_grad: Sequence[bool],
    grad_outputs: Sequence[Tensor | None],
) -> tuple[Tensor | None, ...]:
    """Gradients of ``recompute(*inputs)``'s outputs with respect to ``inputs``, weighted by
    ``grad_outputs`` (one per output; None for an output that received none); one entry per input,
    None where
    ``needs_grad`` (``ctx.needs_input_grad``) is False.

    ``torch.func.vjp`` rather than ``torch.autograd.grad``: its result is differentiable by the
    enclosing autograd graph (``create_graph``) and by enclosing ``torch.func`` transforms alike, it
    accepts cotangents batched by ``vmap``, and it does not depend on ``requires_grad``, which
    ``torch.func`` transforms do not set."""
    wanted = [i for i, (t, need) in enumerate(zip(inputs, needs_grad, strict=True))
              if t is not None and need]
    result: list[Tensor | None] = [None] * len(inputs)
    if not wanted:
        return tuple(result)

    def outputs_of(*primals: Tensor) -> tuple[Tensor, ...]:
        args = list(inputs)
        for i, p in zip(wanted, primals, strict=True):
            args[i] = p
        return tuple(recompute(*args))

    with torch.enable_grad():
        outputs, pullback = torch.func.vjp(outputs_of, *(inputs[i] for i in wanted))
        cotangents = tuple(torch.zeros_like(o) if g is None else g
                           for o, g in zip(outputs, grad_outputs, strict=True))
        grads = pullback(cotangents)
    for i, g in zip(wanted, grads, strict=True):
        result[i] = g
    return tuple(result)
