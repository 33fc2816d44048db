"""The base of the compiled kernels' autograd Functions.

They use the ``setup_context`` form, which ``torch.func`` requires. For that form torch's
``Function.apply`` binds every call's arguments to ``forward``'s signature with ``inspect`` (to fill
in defaults), about 40 us a call: more than the whole GRU forward at (T=50, B=1, H=64). Our callers
always pass every argument positionally, so outside ``torch.func`` transforms :meth:`apply` goes
straight to the C++ ``apply``; inside them it takes torch's path (which ``torch.func`` needs).

``torch.func.vmap``: the kernels have no batching rule, so :meth:`vmap` runs the Function once per
batch entry and stacks the results. Auto dispatch already avoids the kernels under ``vmap``
(``RunRequest.vmapped``); this covers what the dispatcher cannot see, e.g. ``jacfwd``, which batches
only the tangents.
"""

from __future__ import annotations

import torch
from torch._functorch.utils import unwrap_dead_wrappers

_is_wrapped = torch._C._functorch.is_functorch_wrapped_tensor


class KernelFunction(torch.autograd.Function):
    @classmethod
    def apply(cls, *args):
        if torch._C._are_functorch_transforms_active():
            return super().apply(*args)
        # what torch's apply does here, without binding the arguments; a tensor that escaped a
        # finished torch.func transform is unwrapped (the tree walk costs ~7 us, so only then)
        if any(isinstance(a, torch.Tensor) and _is_wrapped(a) for a in args):
            args = unwrap_dead_wrappers(args)
        return super(torch.autograd.Function, cls).apply(*args)

    @classmethod
    def vmap(cls, info, in_dims, *args):
        per_entry = [
            cls.apply(*(a if d is None else a.select(d, b) for a, d in zip(args, in_dims, strict=True)))
            for b in range(info.batch_size)
        ]
        if isinstance(per_entry[0], torch.Tensor):
            return torch.stack(per_entry), 0
        stacked = tuple(None if outs[0] is None else torch.stack(outs) for outs in zip(*per_entry, strict=True))
        return stacked, tuple(None if s is None else 0 for s in stacked)
