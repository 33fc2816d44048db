"""The scan executor: parallel-in-time execution of the cells that are linear in ``h``
(minGRU and minLSTM, :mod:`rnnkit.cells.mingru`).

Their gates read only ``x_t``, so one input GEMM computes all of them for all steps
(``cell.project_input``) and what remains is the elementwise linear recurrence
``h_t = a_t * h_{t-1} + b_t``. How to run that fast depends on the device:

- CPU (``impl="fused"``): the ``scan`` C++ extension (``src/rnnkit/csrc/scan/``) runs the recurrence
  sequentially in time and vectorised / threaded over batch x hidden, with the gate functions fused in,
  forward and backward (backward is the reverse linear recurrence ``dh_{t-1} = a_t dh_t + dy_{t-1}``
  fused with the gate derivatives). One pass over ``gx`` each way: memory speed; the per-step recurrent
  GEMM of the GRU/LSTM is gone. Forward stores nothing beyond ``gx`` and the outputs (``h_{t-1}`` is
  read back from them). A log-space scan would be slower here: on 2-16 cores the sequential pass is
  already at memory bandwidth, and a parallel scan does more passes.
- GPU (``impl="triton"``): ``(a, b)`` from the cell in PyTorch, then a chunked parallel scan over time
  in Triton (:mod:`rnnkit.executors.triton_scan`), forward and backward.

Lengths: steps at or past a sequence's length use ``a=1, b=0`` (the state is kept) and output zero;
reverse runs from T-1 down, as the reference executor. Zoneout stays linear
(``h_t = lerp(a_t h_{t-1} + b_t, h_{t-1}, z_t)``) and is supported; recurrent dropout is not
(these cells have no ``W_hh``). Per-step states are the outputs (the state is ``(h,)``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnkit.cells.base import CellSpec, Params, State
from rnnkit.executors import custom_ops, fused_cpu
from rnnkit.executors.base import (
    Executor,
    RunRequest,
    RunResult,
    StepMasks,
    Sweep,
    compiled_kernel_refusal,
    valid_steps,
)
from rnnkit.executors.kernel_families import declared_kernel_family
from rnnkit.executors.kernel_function import KernelFunction
from rnnkit.executors.recompute import (
    differentiable_backward_needed,
    recomputed_grads,
    recomputed_jvp,
)
from rnnkit.executors.reference import run_steps

# kernel families (CellSpec.kernel_family()) -> the scan extension's family ids
_FAMILY = {"mingru": 0, "minlstm": 1}
_FUSED_DTYPES = (torch.float32, torch.float64, torch.bfloat16)
_TRITON_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
IMPLS = ("fused", "triton")


def _extension():
    from rnnkit._ext import load_extension

    return load_extension("scan")


@torch.compiler.assume_constant_result
def _unavailable() -> str | None:
    """Why the extension cannot run, or None (a constant to Dynamo, as ``fused_cpu._unavailable``)."""
    return _extension()[1]


class _FusedScan(KernelFunction):
    """Inputs after ``meta`` (module, family, act_g, reverse, cell): gx, h0; then the constants z,
    lengths. Outputs every h_t and the final state."""

    @staticmethod
    def forward(meta, gx, h0, z, lengths):
        module, family, act_g, reverse, _ = meta
        return tuple(module.forward(family, act_g, gx, h0, z, lengths, reverse))

    @staticmethod
    def setup_context(ctx, inputs, output):
        meta, gx, h0, z, lengths = inputs
        ctx.meta = meta
        ctx.set_materialize_grads(False)  # backward makes what it needs of a missing gradient
        ctx.save_for_backward(gx, h0, output[0], z, lengths)
        ctx.save_for_forward(gx, h0, z, lengths)

    @staticmethod
    def backward(ctx, dy, dhT):
        module, family, act_g, reverse, _ = ctx.meta
        gx, h0, y, z, lengths = ctx.saved_tensors
        if differentiable_backward_needed(dy, dhT):
            recompute = _FusedScan.reference(ctx.meta, z, lengths)
            grads = recomputed_grads(recompute, (gx, h0), ctx.needs_input_grad[1:3], (dy, dhT))
            return (None, *grads, None, None)
        dy = torch.zeros_like(y) if dy is None else dy.contiguous()
        dhT = None if dhT is None else dhT.contiguous()
        dgx, dh0 = module.backward(family, act_g, gx, h0, y, dy, dhT, z, lengths, reverse)
        return None, dgx, dh0, None, None

    @staticmethod
    def jvp(ctx, _meta, d_gx, d_h0, _dz, _dlengths):
        gx, h0, z, lengths = ctx.saved_tensors
        return recomputed_jvp(_FusedScan.reference(ctx.meta, z, lengths), (gx, h0), (d_gx, d_h0))

    @staticmethod
    def reference(meta, z, lengths):
        """The reference loop computing (y, h_T) from gx and h0."""
        *_, reverse, cell = meta

        def run(gx, h0):
            result = run_steps(cell, {}, gx, (h0,), Sweep(lengths, reverse, StepMasks(None, (z,))))
            return result.outputs, result.final_state[0]

        return run


def _project_input(cell: CellSpec, params: Params, x: Tensor, state0: State) -> Tensor:
    """The input GEMM, the bulk of these cells' work: on CPU in float32 through ``fused_cpu``'s packed
    kernel when that extension runs (measured faster than MKL's sgemm at these shapes; a compiled
    training step too, as the operator ``rnnkit::project``), else the cell's own ``project_input``
    (also while inference or export is captured: the compiler's own GEMM)."""
    own = type(cell).project_input is not CellSpec.project_input
    if (own or x.device.type != "cpu" or x.dtype != torch.float32
            or fused_cpu._unavailable() is not None):
        return cell.project_input(params, x)
    backward = fused_cpu.needs_backward(x, state0, params)
    if custom_ops.capturing() and (torch.compiler.is_exporting() or not backward):
        return cell.project_input(params, x)
    return fused_cpu.project(x, params["weight_ih"], params.get("bias_ih"), backward)


class ScanExecutor(Executor):
    """``impl``: None picks by device (``fused`` on CPU, ``triton`` on GPU); tests name one."""

    name = "scan"
    description = "parallel-in-time cells (minGRU, minLSTM): fused C++ recurrence on CPU, Triton scan on GPU"

    def __init__(self, impl: str | None = None) -> None:
        if impl is not None and impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS} or None, got {impl!r}")
        self.impl = impl

    def _impl(self, device: torch.device) -> str:
        return self.impl or ("fused" if device.type == "cpu" else "triton")

    def supports(self, cell: CellSpec, request: RunRequest) -> str | None:
        if declared_kernel_family(cell) not in _FAMILY:
            return f"the {cell.name!r} cell is not linear in h (scan runs minGRU and minLSTM)"
        impl = self._impl(request.device)
        refusal = compiled_kernel_refusal(request, exportable=impl == "fused")
        if refusal is not None:
            return refusal
        if impl == "fused":
            if request.device.type != "cpu":
                return f"the fused scan runs on CPU, not {request.device.type}"
            if request.dtype not in _FUSED_DTYPES:
                return f"dtype {request.dtype} is not supported on CPU (float32, float64, bfloat16)"
            return _unavailable()
        from rnnkit.executors.triton_scan import interpreting, triton_available

        if request.device.type != "cuda" and not interpreting():
            return f"the Triton scan needs a CUDA device (or TRITON_INTERPRET=1), not {request.device.type}"
        if request.dtype not in _TRITON_DTYPES:
            return f"dtype {request.dtype} is not supported by the Triton scan"
        return triton_available()

    def run_sweep(self, cell: CellSpec, params: Params, x: Tensor, state0: State, sweep: Sweep) -> RunResult:
        lengths, reverse, masks, return_states = sweep
        if masks is not None and masks.recurrent is not None:
            raise ValueError(f"recurrent dropout acts on weight_hh; the {cell.name!r} cell has none")
        z = None
        if masks is not None and masks.zoneout is not None:
            z = masks.zoneout[0]
        T, B = x.shape[0], x.shape[1]
        H = cell.hidden_size
        gx = _project_input(cell, params, x, state0)
        if self._impl(x.device) == "fused" and x.dtype == torch.bfloat16:
            # the projection ran in bf16 (torch's GEMM); the recurrence runs in float32, casts
            # differentiable, results back in bf16
            outputs, final = self._run_fused(cell, gx.float(), state0[0].float(), z, lengths, reverse,
                                             T, B, H)
            outputs, final = outputs.to(x.dtype), final.to(x.dtype)
        elif self._impl(x.device) == "fused":
            outputs, final = self._run_fused(cell, gx, state0[0], z, lengths, reverse, T, B, H)
        else:
            outputs, final = self._run_triton(cell, gx, state0[0], z, lengths, reverse, T, B, H)
        return RunResult(outputs, (final,), (outputs,) if return_states else None)

    def _run_fused(self, cell, gx, h0, z, lengths, reverse, T, B, H):
        if z is not None:
            z = z.detach().to(dtype=gx.dtype)
            if z.dim() != 0:
                z = z.expand(T, B, H).contiguous()
        if lengths is not None:
            lengths = lengths.to(device="cpu", dtype=torch.int64).contiguous()
        family, act_g = _FAMILY[declared_kernel_family(cell)], cell.activation == "g"
        if custom_ops.capturing():
            # torch.compile and torch.export record the kernel as a custom operator (its autograd
            # formula the operator rnnkit::scan_backward)
            return torch.ops.rnnkit.scan(family, act_g, gx, h0, z, lengths, bool(reverse))
        meta = (_extension()[0], family, act_g, bool(reverse), cell)
        return _FusedScan.apply(meta, gx.contiguous(), h0.contiguous(), z, lengths)

    def _run_triton(self, cell, gx, h0, z, lengths, reverse, T, B, H):
        from rnnkit.executors.triton_scan import linear_scan

        a, b = cell.scan_coefficients(gx)
        if z is not None:
            z = z.detach().to(dtype=gx.dtype)
            # lerp(a h + b, h, z) = (a + z (1 - a)) h + (1 - z) b
            a, b = a + z * (1 - a), (1 - z) * b
        valid = valid_steps(lengths, T, gx.device)
        if valid is not None:
            a = torch.where(valid, a, torch.ones_like(a))
            b = torch.where(valid, b, torch.zeros_like(b))
        h, final = linear_scan(a, b, h0, reverse)
        return (h if valid is None else h * valid), final
