"""The base of the compiled kernels' autograd Functions.

They use the ``setup_context`` form, which ``torch.func`` requires. For that form torch's
``Function.apply`` binds every call's arguments to ``forward``'s signature with ``inspect`` (to fill
in defaults), about 40 us a call: more than the whole GRU forward at (T=50, B=1, H=64). Our callers
always pass every argument positionally, so outside ``torch.func`` transforms :meth:`apply` goes
straight to the C++ ``apply``; inside them it takes torch's path (which ``torch.func`` needs).
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
