"""Differentiable backward by recomputation: how the C++ kernels' autograd Functions support
double backward (gradient penalties, MAML, Hessian-vector products).

A kernel's hand-written backward returns plain tensors: autograd cannot differentiate through it a
second time, and ``torch.func.vmap`` cannot batch it. When the backward is asked to build a graph
(``create_graph=True``: autograd runs the Function's backward in grad mode, as ``torch.func``
transforms do too) or receives batched gradients, the Function instead recomputes its forward with
differentiable PyTorch ops (the reference executor's loop over ``cell.step``) from the saved
*inputs* and returns the vector-Jacobian product of that: the same first-order gradients (the
kernels match the reference), through which autograd takes the second order, as torch.nn's.
Ordinary training (``loss.backward()``) never takes this path. Forward-mode AD (``jvp``) is the
recomputation's Jacobian-vector product the same way.
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
    transform wraps it (``grad``/``vjp``/``jacrev`` track their inputs without ``requires_grad``).
    While Dynamo traces there are no wrappers to see (and it cannot call the check)."""
    if torch.compiler.is_compiling():
        return t.requires_grad
    return t.requires_grad or torch._C._functorch.is_functorch_wrapped_tensor(t)


def is_batched(t: Tensor) -> bool:
    """Whether ``torch.func.vmap`` batches ``t`` at any level of ``torch.func`` wrapping (as in
    ``vmap(grad(f))``): the C++ kernels cannot read it. Never while Dynamo traces (it handles
    ``vmap`` itself, and cannot call the check)."""
    if torch.compiler.is_compiling():
        return False
    functorch = torch._C._functorch
    while functorch.is_functorch_wrapped_tensor(t):
        if functorch.is_batchedtensor(t):
            return True
        t = functorch.get_unwrapped(t)
    return False


def _with(inputs: Sequence[Tensor | None], indices: list[int], values: Sequence[Tensor]) -> list:
    merged = list(inputs)
    for i, v in zip(indices, values, strict=True):
        merged[i] = v
    return merged


def recomputed_jvp(
    recompute: Callable[..., Sequence[Tensor]],
    inputs: Sequence[Tensor | None],
    tangents: Sequence[Tensor | None],
) -> tuple[Tensor, ...]:
    """Forward-mode AD (a Function's ``jvp``): the tangents of ``recompute(*inputs)``'s outputs for
    the given input tangents (None: no tangent).

    Under ``torch.func`` transforms by ``torch.func.jvp`` (they nest); under ``torch.autograd``'s
    forward AD, whose levels do not nest, with reverse mode twice: ``J t = d/du [(J^T u) . t]``."""
    moving = [i for i, (t, d) in enumerate(zip(inputs, tangents, strict=True))
              if t is not None and d is not None]
    if moving and torch._C._are_functorch_transforms_active():
        _, out_tangents = torch.func.jvp(
            lambda *moved: tuple(recompute(*_with(inputs, moving, moved))),
            tuple(inputs[i] for i in moving), tuple(tangents[i] for i in moving))
        return tuple(out_tangents)
    with torch.enable_grad():
        leaves = [inputs[i].detach().requires_grad_() for i in moving]
        outputs = tuple(recompute(*_with(inputs, moving, leaves)))
        if not moving:
            return tuple(torch.zeros_like(o) for o in outputs)
        probes = [torch.zeros_like(o, requires_grad=True) for o in outputs]
        vjps = torch.autograd.grad(outputs, leaves, probes, create_graph=True, allow_unused=True)
        pairs = [(v, tangents[i]) for v, i in zip(vjps, moving, strict=True) if v is not None]
        result = torch.autograd.grad([v for v, _ in pairs], probes, [t for _, t in pairs],
                                     allow_unused=True)
    return tuple(torch.zeros_like(o) if r is None else r for o, r in zip(outputs, result, strict=True))


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
        return tuple(recompute(*_with(inputs, wanted, primals)))

    with torch.enable_grad():
        outputs, pullback = torch.func.vjp(outputs_of, *(inputs[i] for i in wanted))
        cotangents = tuple(torch.zeros_like(o) if g is None else g
                           for o, g in zip(outputs, grad_outputs, strict=True))
        grads = pullback(cotangents)
    for i, g in zip(wanted, grads, strict=True):
        result[i] = g
    return tuple(result)
