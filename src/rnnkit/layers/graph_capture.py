"""Graph capture (``torch.jit.trace``, ``torch.jit.script``, ``torch.export``) seen from a layer.

A tracer records tensor operations and nothing else: Python control flow, the executor auto picks
for a batch size and calls into rnnkit's C++ kernels become constants of the recording. So a layer
asks here which tracer, if any, records the call, and lets only what a tracer records faithfully run
(torch's own kernels); the rest raises rather than yield a graph that computes something else.
"""

from __future__ import annotations

import torch
from torch import nn


def capture_mode() -> str | None:
    """The tracer recording the current call: "torch.jit.trace" (also what
    ``torch.onnx.export(dynamo=False)`` uses), "torch.export", or None. ``torch.compile``'s Dynamo
    is not one: it sees through Python and breaks the graph at what it cannot trace."""
    if torch.jit.is_tracing():
        return "torch.jit.trace"
    if torch.compiler.is_exporting():
        return "torch.export"
    return None


def refuse_scripting(module: nn.Module) -> None:
    """``torch.jit.script`` cannot compile rnnkit's modules (Python dispatch to executors, C++
    kernels, keyword-only options): say so, with the ways out, instead of a parser error."""
    name = type(module).__name__
    raise RuntimeError(
        f"torch.jit.script cannot compile rnnkit's {name}: its forward is Python TorchScript does "
        "not support (executor dispatch, C++ kernels, keyword-only options). Use torch.compile, "
        "torch.export.export or, for plain configurations, torch.jit.trace"
    )
