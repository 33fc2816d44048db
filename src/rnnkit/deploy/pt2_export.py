"""``torch.export`` archives (``.pt2``) of :class:`rnnkit.Recurrent` with state in and out.

The program is ``module(input, state) -> (output, final_state)`` with torch.nn's shapes, dynamic batch
and time. rnnkit's kernels appear in it as the custom operators ``rnnkit::fused_rnn``/``rnnkit::scan``
(``executors/custom_ops.py``), so the process that loads it must ``import rnnkit`` first.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import Tensor

from rnnkit.deploy.onnx_export import OnnxExportError, check_inference
from rnnkit.layers.recurrent import Recurrent


def export_pt2(module: torch.nn.Module, path: str | os.PathLike[str], *, example_input: Tensor | None = None
               ) -> Any:
    """Write ``torch.export.export(module, (input, state))`` with dynamic ``time`` and ``batch`` to
    ``path`` and return the ``ExportedProgram``. ``example_input`` (default: 5 steps x 3 sequences of
    random numbers) is the traced example; the program is then run on another length and batch size
    and compared with ``module`` (a difference above 1e-5 raises)."""
    check_inference(module, "export_pt2")
    assert isinstance(module, Recurrent)
    dtype = module.weight_ih_l0.dtype
    x = example_input if example_input is not None else _random_input(module, 5, 3, dtype)
    if x.dim() != 3:
        raise OnnxExportError(f"example_input must be 3-D (a batch of sequences), got {x.dim()}-D")
    T, B = torch.export.Dim("time", min=2), torch.export.Dim("batch", min=2)
    batch_axis, time_axis = (0, 1) if module.batch_first else (1, 0)
    state = _as_arg(_zero_state(module, x.shape[batch_axis], dtype))
    state_dims: Any = tuple({1: B} for _ in state) if isinstance(state, tuple) else {1: B}
    with torch.no_grad():
        program = torch.export.export(module, (x, state), dynamic_shapes=({time_axis: T, batch_axis: B}, state_dims))
    torch.export.save(program, os.fspath(path))
    _check(module, torch.export.load(os.fspath(path)), dtype)
    return program


def _random_input(module: Recurrent, T: int, B: int, dtype: torch.dtype) -> Tensor:
    g = torch.Generator().manual_seed(0)
    shape = (B, T) if module.batch_first else (T, B)
    return torch.randn(*shape, module.input_size, generator=g).to(dtype)


def _as_arg(state: tuple[Tensor, ...]) -> Tensor | tuple[Tensor, ...]:
    """The state as ``forward`` takes it: a tuple for the LSTM, a tensor otherwise."""
    return state if len(state) > 1 else state[0]


def _zero_state(module: Recurrent, batch: int, dtype: torch.dtype) -> tuple[Tensor, ...]:
    LD = module.num_layers * module.num_directions
    return tuple(torch.zeros(LD, batch, n, dtype=dtype) for n in module._state_sizes)


def _check(module: Recurrent, program: Any, dtype: torch.dtype) -> None:
    """The saved program on another shape (T=7, B=4, random state) against the module."""
    g = torch.Generator().manual_seed(1)
    x = _random_input(module, 7, 4, dtype)
    state = tuple(torch.randn(s.shape, generator=g).to(dtype) for s in _zero_state(module, 4, dtype))
    with torch.no_grad():
        want = module(x, _as_arg(state))
        got = program.module()(x, _as_arg(state))
    flat_want = [want[0], *(want[1] if isinstance(want[1], tuple) else (want[1],))]
    flat_got = [got[0], *(got[1] if isinstance(got[1], tuple) else (got[1],))]
    for a, b in zip(flat_got, flat_want, strict=True):
        if a.shape != b.shape or float((a - b).abs().max()) > 1e-5:
            raise OnnxExportError("the exported program differs from the module on a (T=7, B=4) check input")
