"""The fused CPU executor: C++ forward and backward over a whole sequence (Haste's design).

The input projection over all steps is one GEMM outside the loop, done by the extension into its
cache of large buffers (:class:`_Projection`; a fresh buffer of that size costs a page fault per
4 KiB on every call): ``x W_ih^T + b_ih`` for GRU/Elman (the layer-norm GRU keeps
``cell.project_input``); for the LSTM only ``x W_ih^T``, without bias: the kernel adds
``b_ih + b_hh`` and applies the input layer norm itself, so that LN_ih, its backward and the bias
gradients cost no extra passes over memory. The time loop and its backward are one
:class:`torch.autograd.Function` whose forward and backward call the ``fused_cpu`` C++ extension
(``src/rnnkit/csrc/fused_cpu/``): per step one GEMM (two for a projected LSTM), called
straight into BLAS on preallocated buffers, and one fused pointwise pass; backward per step the
pointwise pass and one GEMM for ``dh_{t-1}``; the LSTM's bias, layer-norm and peephole gradients
in one pass over all rows after the loop, weight gradients as one GEMM each over all T*B rows.

Cells: every cell whose class declares a ``kernel_family()`` the extension has (see
:mod:`rnnkit.executors.kernel_families`): Elman (tanh, relu, modReLU), LSTM (plain, layer norm,
peepholes, projection), GRU (plain, layer norm), IndRNN (relu, tanh; its element-wise recurrence runs
without a GEMM per step); the cell's parameters go to the kernel by name;
recurrent-dropout and zoneout masks (:class:`~rnnkit.executors.base.StepMasks`), lengths, both
directions; float32 and float64 on CPU; per-step states (``return_states``: ``h_t`` is the output
itself, the LSTM's ``c_t`` one more output of the kernel, differentiable).

Masks are treated as constants (no gradient flows to them), as the layer samples them.

Auto dispatch: this executor is registered ahead of ``native`` but *yields* to it for the plain LSTM
(:meth:`FusedCPUExecutor.yields_to`), where torch's oneDNN kernel is faster; for plain GRU/Elman it is
measured faster than torch's kernels and wins (see ``benchmarks/executors.py``).
"""

from __future__ import annotations

from functools import cache, partial

import torch
from torch import Tensor

from rnnkit.cells.base import CellSpec, Params, State, layer_norm
from rnnkit.executors import custom_ops
from rnnkit.executors.base import Executor, RunRequest, RunResult, StepMasks, Sweep, compiled_kernel_refusal
from rnnkit.executors.kernel_families import declared_kernel_family, kernel_options
from rnnkit.executors.kernel_function import KernelFunction
from rnnkit.executors.recompute import (
    differentiable_backward_needed,
    recomputed_grads,
    recomputed_jvp,
    tracked,
)
from rnnkit.executors.reference import run_steps

_DTYPES = (torch.float32, torch.float64, torch.bfloat16)
SMALL_LSTM = 2048  # batch x hidden up to which auto runs a plain LSTM here rather than in oneDNN
# the parameters applied to x W_ih^T: the caller's projection adds them, or (a family that takes the
# raw projection, the LSTM) the kernel does
_INPUT_SIDE = ("bias_ih", "layer_norm_ih_weight", "layer_norm_ih_bias")


def _extension():
    from rnnkit._ext import load_extension

    return load_extension("fused_cpu")


@torch.compiler.assume_constant_result
def _unavailable() -> str | None:
    """Why the extension cannot run, or None: a constant to Dynamo, which would otherwise trace
    into the loader (file globbing, the build)."""
    return _extension()[1]


@torch.compiler.assume_constant_result
def family_info(family: str) -> tuple[int, bool] | None:
    """(number of states, whether the kernel takes the raw projection ``x W_ih^T`` and applies the
    input side itself) of the extension's kernel family ``family``, or None if it has none (a
    constant to Dynamo, as :func:`_unavailable`)."""
    info = _families().get(family)
    return None if info is None else (info["states"], bool(info["raw_input"]))


@cache
def _families() -> dict[str, dict[str, int]]:
    module, _ = _extension()
    return {} if module is None else dict(module.families())


def kernel_family(cell: CellSpec) -> str | None:
    """The fused kernel family that runs ``cell``, or None (the cell's class declares none, or the
    extension has no such family)."""
    family = declared_kernel_family(cell)
    return family if family is not None and family_info(family) is not None else None


def kernel_params(cell: CellSpec, params: Params, raw_input: bool) -> Params:
    """The cell's parameters as the kernel takes them, by name: all but ``weight_ih`` (and, unless the
    family takes the raw projection, the input side the caller's projection applied), ``weight_hh``
    as the step uses it (IndRNN's ``recurrent_weight`` clamps it; autograd sees the clamp)."""
    out = {name: t for name, t in params.items()
           if name != "weight_ih" and (raw_input or name not in _INPUT_SIDE)}
    if "weight_hh" in out:
        out["weight_hh"] = cell.recurrent_weight(params)
    return out


def _saved(outputs: tuple, first: int) -> list[Tensor]:
    """The kernel's buffers for backward (outputs from ``first`` on), undefined ones as empty."""
    return [s if s is not None else torch.Tensor() for s in outputs[first:]]


def _keep_for_backward(ctx, inputs: tuple, outputs: tuple, first: int) -> None:
    """Save every tensor input (the differentiable backward recomputes from them) and the kernel's
    buffers (outputs from ``first`` on, which are not differentiable)."""
    ctx.n_inputs, ctx.n_outputs = len(inputs) - 1, len(outputs)
    # no zeros for the outputs that get no gradient: the buffers are as large as the activations
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(*inputs[1:], *outputs[first:])
    ctx.save_for_forward(*inputs[1:])  # forward-mode AD (jvp) recomputes from the inputs
    ctx.mark_non_differentiable(*(t for t in outputs[first:] if t is not None))


class _FusedRun(KernelFunction):
    """One layer-direction over a sequence, any family. Inputs after ``meta`` (module, family,
    options, names, two_states, raw_input, reverse, want_states, cell): gx, h0, c0 (None for one
    state), the kernel's parameters in the order of ``names``; then the constants rmask, zh, zc,
    lengths. Outputs y, h_T, c_T and the per-step c (None where the family has no second state or
    ``want_states`` is off), then the kernel's buffers for backward."""

    @staticmethod
    def forward(meta, gx, h0, c0, *rest):
        module, family, options, names, _, _, reverse, want_states, _ = meta
        n = len(names)
        rmask, zh, zc, lengths = rest[n:]
        return tuple(module.forward(
            family, options, gx, h0, c0, dict(zip(names, rest[:n], strict=True)), rmask, zh, zc,
            lengths, reverse, want_states, True))

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.meta = inputs[0]
        _keep_for_backward(ctx, inputs, output, 4)

    @staticmethod
    def backward(ctx, dy, dh, dc, dcs, *_buffers):
        module, family, options, names, two_states, _, reverse, want_states, _ = ctx.meta
        everything = ctx.saved_tensors
        inputs, saved = everything[:ctx.n_inputs], _saved(everything, ctx.n_inputs)
        n_diff = 3 + len(names)
        differentiable, constants = inputs[:n_diff], inputs[n_diff:]
        if differentiable_backward_needed(dy, dh, dc, dcs):
            recompute = _FusedRun.reference(ctx.meta, constants)
            grad_outputs = (dy, dh, dc, dcs)[:_n_outputs(two_states, want_states)]
            grads = recomputed_grads(recompute, differentiable, ctx.needs_input_grad[1:1 + n_diff],
                                     grad_outputs)
            return (None, *grads, None, None, None, None)
        gx, _, c0 = differentiable[:3]
        rmask, zh, zc, lengths = constants
        hp = saved[0]
        if dy is None:
            dy = torch.zeros_like(hp)
        if dh is None:
            dh = torch.zeros_like(hp[0])
        if two_states and dc is None:
            dc = torch.zeros_like(c0)
        (dgx, dh0, dc0), grads = module.backward(
            family, options, dy, dh, dc, dcs, saved, gx,
            dict(zip(names, differentiable[3:], strict=True)), rmask, zh, zc, lengths, reverse)
        return (None, dgx, dh0, dc0 if two_states else None, *(grads.get(n) for n in names),
                None, None, None, None)

    @staticmethod
    def jvp(ctx, _meta, *tangents):
        inputs = ctx.saved_tensors
        n_diff = 3 + len(ctx.meta[3])
        outputs = recomputed_jvp(_FusedRun.reference(ctx.meta, inputs[n_diff:n_diff + 4]),
                                 inputs[:n_diff], tangents[:n_diff])
        return (*outputs, *[None] * (ctx.n_outputs - len(outputs)))

    @staticmethod
    def reference(meta, constants):
        """The reference loop computing the differentiable outputs (y, h_T[, c_T[, every c_t]]) from
        the differentiable inputs (gx, h0, c0, *parameters)."""
        _, _, _, names, two_states, raw_input, reverse, want_states, cell = meta
        rmask, zh, zc, lengths = constants
        masks = StepMasks(rmask, (zh, zc) if two_states else (zh,))
        return partial(_reference_run, cell, names, two_states, raw_input, reverse, want_states,
                       masks, lengths)


def _n_outputs(two_states: bool, want_states: bool) -> int:
    """How many of the kernel's outputs are differentiable: y, h_T (c_T, and every c_t if asked)."""
    return 2 if not two_states else 4 if want_states else 3


def _reference_run(cell, names, two_states, raw_input, reverse, want_states, masks, lengths, gx, h0,
                   c0, *tensors):
    """:class:`_FusedRun`'s differentiable outputs recomputed by the reference loop."""
    params = {name: t for name, t in zip(names, tensors, strict=True) if t is not None}
    gates = input_side(gx, params) if raw_input else gx
    state0 = (h0, c0) if two_states else (h0,)
    run = run_steps(cell, params, gates, state0, Sweep(lengths, reverse, masks, want_states and two_states))
    per_step_c = (run.states[1],) if want_states and two_states else ()
    return (run.outputs, *run.final_state, *per_step_c)


def input_side(gx: Tensor, params: Params) -> Tensor:
    """What a raw-input kernel (the LSTM's) adds to ``gx = x W_ih^T`` itself: ``LN_ih(gx) + b_ih``
    (the cell's ``project_input`` after its GEMM)."""
    if "layer_norm_ih_weight" in params:
        gx = layer_norm(gx, params, "layer_norm_ih")
    return gx if "bias_ih" not in params else gx + params["bias_ih"]


class _Projection(KernelFunction):
    """``x W^T (+ b)`` over all steps, computed by the extension into its cache of large buffers: a
    fresh buffer of this size from the allocator costs a page fault per 4 KiB on every call."""

    @staticmethod
    def forward(module, x, w, b):
        return module.project(x.contiguous(), w.contiguous(), b)

    @staticmethod
    def setup_context(ctx, inputs, output):
        module, x, w, b = inputs
        ctx.module = module
        ctx.save_for_backward(x, w, b)
        ctx.save_for_forward(x, w, b)

    @staticmethod
    def backward(ctx, dgx):
        x, w, b = ctx.saved_tensors
        if differentiable_backward_needed(dgx):
            return (None, *recomputed_grads(_linear, (x, w, b), ctx.needs_input_grad[1:], (dgx,)))
        need = ctx.needs_input_grad
        dx, dw, db = ctx.module.project_backward(
            dgx, x.contiguous(), w.contiguous(), need[1], need[2],
            b is not None and need[3])
        return None, dx, dw, db

    @staticmethod
    def jvp(ctx, _module, *tangents):
        return recomputed_jvp(_linear, ctx.saved_tensors, tangents)[0]


def _linear(x: Tensor, w: Tensor, b: Tensor | None) -> tuple[Tensor]:
    return (torch.nn.functional.linear(x, w, b),)


def project(x: Tensor, w: Tensor, b: Tensor | None, backward: bool) -> Tensor:
    """``x W^T (+ b)`` over all steps by the extension (its packed float32 kernel, large results in
    its block cache), differentiable when ``backward``; the caller checks that the extension runs.
    While a graph is captured (a compiled training step) the operator ``rnnkit::project``."""
    if custom_ops.capturing():
        return torch.ops.rnnkit.project(x, w, b)
    module, _ = _extension()
    if backward:
        return _Projection.apply(module, x, w, b)
    return module.project(x.contiguous(), w.detach().contiguous(), None if b is None else b.detach())


def _plain_lstm(family: str, cell: CellSpec, params: Params, masks: tuple, lengths: Tensor | None,
                reverse: bool) -> bool:
    """Whether a captured run is one that torch's LSTM computes too (``custom_ops.lstm_layer``):
    torch.nn's parameters only, no masks, lengths or reversal."""
    return (family == "lstm" and cell.unsupported_by_torch() is None and all(m is None for m in masks)
            and lengths is None
            and not reverse and set(params) <= {"weight_ih", "weight_hh", "bias_ih", "bias_hh"}
            and ("bias_ih" in params) == ("bias_hh" in params))


def needs_backward(x: Tensor, state0: State, params: Params) -> bool:
    """Whether autograd will ask for gradients of this run (else the kernels keep nothing for it)."""
    return torch.is_grad_enabled() and (
        tracked(x) or any(map(tracked, state0)) or any(map(tracked, params.values()))
    )


def _zoneout(z: Tensor | None, T: int, B: int, n: int, like: Tensor) -> Tensor | None:
    """None, a 0-dim weight, or a contiguous (T, B, n) weight in ``like``'s dtype."""
    if z is None:
        return None
    z = z.detach().to(dtype=like.dtype)
    if z.dim() == 0:
        return z
    return z.expand(T, B, n).contiguous()


class FusedCPUExecutor(Executor):
    name = "fused_cpu"
    description = "C++ fused loop and backward on CPU (Elman, LSTM, GRU, IndRNN with every option)"

    def supports(self, cell: CellSpec, request: RunRequest) -> str | None:
        if declared_kernel_family(cell) is None:
            return f"no fused CPU kernel for the {cell.name!r} cell"
        if request.device.type != "cpu":
            return f"runs on CPU only, not {request.device.type}"
        if request.dtype not in _DTYPES:
            return f"dtype {request.dtype} is not supported (float32, float64, bfloat16)"
        refusal = compiled_kernel_refusal(request, exportable=True)
        if refusal is not None:
            return refusal
        if request.capture == "torch.export" and request.return_states:
            return "torch.export: its exported kernels return no per-step states"
        unavailable = _unavailable()
        if unavailable is not None:
            return unavailable
        if kernel_family(cell) is None:
            return f"the fused_cpu extension has no {cell.kernel_family()!r} kernel"
        return None

    def precision(self, dtype: torch.dtype) -> str | None:
        if dtype != torch.bfloat16 or _unavailable() is not None:
            return None
        module, _ = _extension()
        gemms = ("per-step GEMMs on AMX tiles" if module.amx_available()
                 else "per-step GEMMs in float32 (no AMX on this CPU)")
        return (f"bfloat16: state and pointwise math in float32; {gemms}; projections and weight "
                "gradients in torch's bf16 GEMM (float32 accumulation)")

    def yields_to(self, cell: CellSpec, request: RunRequest) -> str | None:
        """For auto dispatch: the executor that should run this request instead, though this one can.

        torch's oneDNN LSTM is faster than the fused loop for the plain LSTM, so auto leaves it to
        ``native`` (which refuses the variants: layer norm, peepholes, masks), except for small
        batch x hidden (<= 2048), where oneDNN's per-step overhead dominates and the fused loop was
        measured 0.11x (B=1, H=64) and 0.71-0.86x (B=16, H=128) of its time (docs/benchmarks.md).
        Nor with variable lengths: torch then takes a packed sequence, which on CPU runs its generic
        per-step LSTM instead of oneDNN, and its backward took 66 s at (T=1344, B=8, H=512) against
        1.3 s padded (docs/benchmarks.md, "Variable lengths").
        """
        if (declared_kernel_family(cell) == "lstm" and cell.unsupported_by_torch() is None
                and not request.has_masks):
            if custom_ops.capturing():  # one custom operator: no graph break, no guard on the batch
                return None
            if request.batch is not None and request.batch * cell.hidden_size <= SMALL_LSTM:
                return None
            if request.has_lengths and request.device.type == "cpu":
                return None
            return "native"
        return None

    def run_sweep(self, cell: CellSpec, params: Params, x: Tensor, state0: State, sweep: Sweep) -> RunResult:
        lengths, reverse, masks, return_states = sweep
        family = declared_kernel_family(cell)
        states, raw_input = family_info(family)
        two_states = states == 2
        T, B = x.shape[0], x.shape[1]
        h0 = state0[0].contiguous()
        c0 = state0[1].contiguous() if two_states else None

        rmask = zh = zc = None
        if masks is not None:
            if masks.recurrent is not None:
                rmask = masks.recurrent.detach().to(x.dtype).expand(B, cell.output_size).contiguous()
            if masks.zoneout is not None:
                zs = tuple(masks.zoneout) + (None,) * (2 - len(masks.zoneout))
                zh = _zoneout(zs[0], T, B, cell.output_size, x)
                if two_states:
                    zc = _zoneout(zs[1], T, B, cell.hidden_size, x)
        if lengths is not None:
            lengths = lengths.to(device="cpu", dtype=torch.int64).contiguous()

        options = kernel_options(cell)
        named = {name: t.contiguous() for name, t in kernel_params(cell, params, raw_input).items()}
        names = tuple(named)
        # without autograd (inference) the kernels keep nothing for backward: no per-step buffers
        backward = needs_backward(x, state0, params)
        # torch.compile and torch.export record the kernels as custom operators: inference as one,
        # training (torch.compile with autograd) as fused_rnn_train and its backward operator
        as_operator = custom_ops.capturing() and not return_states
        training = as_operator and backward and not torch.compiler.is_exporting()
        low = x.dtype if x.dtype == torch.bfloat16 else None
        if (as_operator and not training and low is None
                and _plain_lstm(family, cell, params, (rmask, zh, zc), lengths, reverse)):
            y, h, c = torch.ops.rnnkit.lstm_layer(
                custom_ops.encode_options(options), x, h0, c0, params["weight_ih"], params["weight_hh"],
                params.get("bias_ih"), params.get("bias_hh"), SMALL_LSTM)
            return RunResult(y, (h, c), None)
        # torch's GEMM: the compiler's own (inference, export), or its bf16 one; a compiled training
        # step keeps the packed projection below (rnnkit::project), which its dx and dW gain most from
        if (as_operator and not training) or low is not None:
            gx = (torch.nn.functional.linear(x, params["weight_ih"]) if raw_input  # the kernel adds b_ih, LN_ih
                  else cell.project_input(params, x).contiguous())
        elif raw_input:  # the kernel applies the input side (b_ih, LN_ih) itself
            gx = project(x, params["weight_ih"], None, backward)
        elif "layer_norm_ih_weight" in params:  # the cell's own projection
            gx = cell.project_input(params, x).contiguous()
        else:
            gx = project(x, params["weight_ih"], params.get("bias_ih"), backward)
        if low is not None:
            # bfloat16: the projection above ran in torch's bf16 GEMM (oneDNN: AMX, fp32
            # accumulation); the loop keeps its state, pointwise math and sums in float32 and runs
            # its per-step GEMMs on bf16 operands (gemm_precision); the casts are differentiable, so
            # autograd hands back bf16 gradients
            gx = gx.float()
            h0, c0 = h0.float(), None if c0 is None else c0.float()
            named = {name: t.float() for name, t in named.items()}
            rmask, zh, zc = (None if m is None else m.float() for m in (rmask, zh, zc))
            options = {**options, "gemm_precision": "bf16"}
        result = self._loop(family, options, names, named, two_states, raw_input, cell, gx, h0, c0,
                            (rmask, zh, zc, lengths), reverse, return_states, backward, as_operator,
                            training)
        if low is None:
            return result
        return RunResult(result.outputs.to(low), tuple(s.to(low) for s in result.final_state),
                         None if result.states is None else tuple(s.to(low) for s in result.states))

    @staticmethod
    def _loop(family: str, options: dict[str, str], names: tuple[str, ...], named: Params,
              two_states: bool, raw_input: bool, cell: CellSpec, gx: Tensor, h0: Tensor,
              c0: Tensor | None, constants: tuple, reverse: bool, return_states: bool, backward: bool,
              as_operator: bool, training: bool = False) -> RunResult:
        """The time loop over ``gx``: one custom operator under capture (``fused_rnn_train``, whose
        autograd formula is the backward operator, when ``training``), else the extension (through
        :class:`_FusedRun` when autograd needs its backward)."""
        rmask, zh, zc, lengths = constants

        if as_operator:
            args = (family, custom_ops.encode_options(options), ",".join(names), gx, h0, c0,
                    list(named.values()), rmask, zh, zc, lengths, bool(reverse))
            if training:
                y, h, c, _ = torch.ops.rnnkit.fused_rnn_train(*args, custom_ops.train_layout(*args[:10]))
            else:
                y, h, c = torch.ops.rnnkit.fused_rnn(*args)
            return RunResult(y, (h, c) if two_states else (h,), None)
        module, _ = _extension()
        if backward:
            meta = (module, family, options, names, two_states, raw_input, bool(reverse),
                    bool(return_states), cell)
            result = _FusedRun.apply(meta, gx, h0, c0, *named.values(), rmask, zh, zc, lengths)
        else:
            result = module.forward(family, options, gx.detach(), h0.detach(),
                                    None if c0 is None else c0.detach(),
                                    {n: t.detach() for n, t in named.items()}, rmask, zh, zc,
                                    lengths, bool(reverse), bool(return_states), False)
        outputs = result[0]
        final = (result[1], result[2]) if two_states else (result[1],)
        states = None
        if return_states:  # per-step h is the output itself (both zero past each length)
            states = (outputs, result[3]) if two_states else (outputs,)
        return RunResult(outputs, final, states)
