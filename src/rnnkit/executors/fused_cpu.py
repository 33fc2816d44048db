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

Cells: Elman (tanh, relu, modReLU), LSTM (plain, layer norm, peepholes, projection), GRU (plain, layer norm);
recurrent-dropout and zoneout masks (:class:`~rnnkit.executors.base.StepMasks`), lengths, both
directions; float32 and float64 on CPU; per-step states (``return_states``: ``h_t`` is the output
itself, the LSTM's ``c_t`` one more output of the kernel, differentiable).

Masks are treated as constants (no gradient flows to them), as the layer samples them.

Auto dispatch: this executor is registered ahead of ``native`` but *yields* to it for the plain LSTM
(:meth:`FusedCPUExecutor.yields_to`), where torch's oneDNN kernel is faster; for plain GRU/Elman it is
measured faster than torch's kernels and wins (see ``benchmarks/executors.py``).
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor

from rnnkit.cells.base import CellSpec, Params, State, layer_norm
from rnnkit.cells.elman import ElmanSpec
from rnnkit.cells.gru import GRUSpec
from rnnkit.cells.lstm import LSTMSpec
from rnnkit.executors import custom_ops
from rnnkit.executors.base import Executor, RunRequest, RunResult, StepMasks, compiled_kernel_refusal
from rnnkit.executors.kernel_function import KernelFunction
from rnnkit.executors.recompute import (
    differentiable_backward_needed,
    recomputed_grads,
    recomputed_jvp,
    tracked,
)
from rnnkit.executors.reference import run_steps

_DTYPES = (torch.float32, torch.float64)
SMALL_LSTM = 2048  # batch x hidden up to which auto runs a plain LSTM here rather than in oneDNN
_ELMAN_TANH, _ELMAN_RELU, _LSTM, _GRU, _ELMAN_MODRELU = 0, 1, 2, 3, 4
_ELMAN = {"tanh": _ELMAN_TANH, "relu": _ELMAN_RELU, "modrelu": _ELMAN_MODRELU}


def _extension():
    from rnnkit._ext import load_extension

    return load_extension("fused_cpu")


@torch.compiler.assume_constant_result
def _unavailable() -> str | None:
    """Why the extension cannot run, or None: a constant to Dynamo, which would otherwise trace
    into the loader (file globbing, the build)."""
    return _extension()[1]


def _family(cell: CellSpec) -> int | None:
    # exact types: a subclass may change the equations
    if type(cell) is ElmanSpec:
        return _ELMAN[cell.nonlinearity]
    if type(cell) is LSTMSpec:
        return _LSTM
    if type(cell) is GRUSpec:
        return _GRU
    return None


def _named(**tensors: Tensor | None) -> Params:
    return {name: t for name, t in tensors.items() if t is not None}


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
    """Inputs after ``meta`` (module, family, reverse, cell): gx, h0, c0, w_hh, b_hh, ln_hh_w,
    ln_hh_b, ln_c_w, ln_c_b, peep_i, peep_f, peep_o, w_hr (tensors or None); then the constants
    rmask, zh, zc, lengths. Outputs y, h_T, c_T (None but for the LSTM), then the kernel's buffers
    for backward."""

    @staticmethod
    def forward(meta, gx, h0, c0, w_hh, b_hh, ln_hh_w, ln_hh_b, ln_c_w, ln_c_b,
                peep_i, peep_f, peep_o, w_hr, rmask, zh, zc, lengths):
        module, family, reverse, _ = meta
        return tuple(module.forward(
            family, gx, h0, c0, w_hh, b_hh, ln_hh_w, ln_hh_b, ln_c_w, ln_c_b, peep_i, peep_f,
            peep_o, w_hr, rmask, zh, zc, lengths, reverse, True,
        ))

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.meta = inputs[0]
        _keep_for_backward(ctx, inputs, output, 3)

    @staticmethod
    def backward(ctx, dy, dh, dc, *_buffers):
        module, family, reverse, _ = ctx.meta
        everything = ctx.saved_tensors
        inputs, saved = everything[:ctx.n_inputs], _saved(everything, ctx.n_inputs)
        rmask, zh, zc, lengths = inputs[13:]
        if differentiable_backward_needed(dy, dh):
            recompute = _FusedRun.reference(ctx.meta, inputs[13:])
            grads = recomputed_grads(recompute, inputs[:13], ctx.needs_input_grad[1:14], (dy, dh))
            return (None, *grads, None, None, None, None)
        (_, _, _, w_hh, b_hh, ln_hh_w, _, ln_c_w, _, peep_i, peep_f, peep_o, w_hr) = inputs[:13]
        if dy is None:
            dy = torch.zeros_like(saved[0])
        if dh is None:
            dh = torch.zeros_like(saved[0][0])
        grads = module.backward(
            family, dy, dh, None, saved, w_hh, b_hh, ln_hh_w, ln_c_w, peep_i, peep_f, peep_o, w_hr,
            rmask, zh, zc, lengths, reverse,
        )
        (dgx, dh0, _, dw_hh, db_hh, dln_w, dln_b, dlnc_w, dlnc_b, dpi, dpf, dpo, dw_hr) = grads
        return (None, dgx, dh0, None, dw_hh, db_hh, dln_w, dln_b, dlnc_w, dlnc_b, dpi, dpf, dpo,
                dw_hr, None, None, None, None)

    @staticmethod
    def jvp(ctx, _meta, *tangents):
        inputs = ctx.saved_tensors
        dy, dh = recomputed_jvp(_FusedRun.reference(ctx.meta, inputs[13:]), inputs[:13], tangents[:13])
        return (dy, dh, *[None] * (ctx.n_outputs - 2))

    @staticmethod
    def reference(meta, constants):
        """The reference loop computing (y, h_T) from the 13 differentiable inputs."""
        _, _, reverse, cell = meta
        rmask, zh, _, lengths = constants
        return partial(_reference_run, cell, reverse, StepMasks(rmask, (zh,)), lengths)


def _reference_run(cell, reverse, masks, lengths, gx, h0, _c0, w_hh, b_hh, ln_hh_w, ln_hh_b,
                   _ln_c_w, _ln_c_b, peep_i, *_unused):
    """:class:`_FusedRun`'s outputs (y, h_T) recomputed by the reference loop from its inputs."""
    # the modReLU threshold travels in the peephole-i slot
    params = _named(weight_hh=w_hh, bias_hh=b_hh, layer_norm_hh_weight=ln_hh_w,
                    layer_norm_hh_bias=ln_hh_b, modrelu_bias=peep_i)
    run = run_steps(cell, params, gx, (h0,), lengths, reverse, masks)
    return run.outputs, run.final_state[0]


def lstm_input_gates(gx: Tensor, b_ih: Tensor | None, ln_ih_w: Tensor | None,
                     ln_ih_b: Tensor | None) -> Tensor:
    """The LSTM's input part of the gates from ``gx = x W_ih^T`` (no bias): what the kernel adds to
    it itself, ``LN_ih(gx) + b_ih`` (the cell's ``project_input`` after its GEMM)."""
    if ln_ih_w is not None:
        gx = layer_norm(gx, _named(layer_norm_ih_weight=ln_ih_w, layer_norm_ih_bias=ln_ih_b),
                        "layer_norm_ih")
    return gx if b_ih is None else gx + b_ih


class _FusedLSTM(KernelFunction):
    """Inputs after ``meta`` (module, reverse, want_states, cell): gx (x W_ih^T, no bias), h0, c0,
    w_hh, b_ih, b_hh, ln_ih_w, ln_ih_b, ln_hh_w, ln_hh_b, ln_c_w, ln_c_b, peep_i, peep_f, peep_o,
    w_hr (tensors or None); then the constants rmask, zh, zc, lengths. Outputs y, h_T, c_T, the
    per-step c (None unless ``want_states``), then the kernel's buffers for backward."""

    @staticmethod
    def forward(meta, gx, h0, c0, w_hh, b_ih, b_hh, ln_ih_w, ln_ih_b, ln_hh_w, ln_hh_b,
                ln_c_w, ln_c_b, peep_i, peep_f, peep_o, w_hr, rmask, zh, zc, lengths):
        module, reverse, want_states, _ = meta
        return tuple(module.lstm_forward(
            gx, h0, c0, w_hh, b_ih, b_hh, ln_ih_w, ln_ih_b, ln_hh_w, ln_hh_b, ln_c_w, ln_c_b,
            peep_i, peep_f, peep_o, w_hr, rmask, zh, zc, lengths, reverse, want_states, True,
        ))

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.meta = inputs[0]
        _keep_for_backward(ctx, inputs, output, 4)

    @staticmethod
    def backward(ctx, dy, dh, dc, dcs, *_buffers):
        module, reverse, want_states, _ = ctx.meta
        everything = ctx.saved_tensors
        inputs, saved = everything[:ctx.n_inputs], _saved(everything, ctx.n_inputs)
        rmask, zh, zc, lengths = inputs[16:]
        if differentiable_backward_needed(dy, dh, dc, dcs):
            recompute = _FusedLSTM.reference(ctx.meta, inputs[16:])
            grads = recomputed_grads(recompute, inputs[:16], ctx.needs_input_grad[1:17],
                                     (dy, dh, dc, dcs)[:4 if want_states else 3])
            return (None, *grads, None, None, None, None)
        (gx, _, _, w_hh, b_ih, b_hh, ln_ih_w, _, ln_hh_w, _, ln_c_w, _,
         peep_i, peep_f, peep_o, w_hr) = inputs[:16]
        hp = saved[0]
        if dy is None:
            dy = torch.zeros_like(hp)
        if dh is None:
            dh = torch.zeros_like(hp[0])
        if dc is None:
            dc = torch.zeros(hp.shape[1], w_hh.shape[0] // 4, dtype=hp.dtype)
        grads = module.lstm_backward(
            dy, dh, dc, dcs, saved, gx if ln_hh_w is not None else torch.Tensor(), w_hh, b_ih, b_hh,
            ln_ih_w, ln_hh_w, ln_c_w, peep_i, peep_f, peep_o, w_hr, rmask, zh, zc, lengths, reverse,
        )
        return (None, *grads, None, None, None, None)

    @staticmethod
    def jvp(ctx, _meta, *tangents):
        inputs = ctx.saved_tensors
        outputs = recomputed_jvp(_FusedLSTM.reference(ctx.meta, inputs[16:]), inputs[:16],
                                 tangents[:16])
        return (*outputs, *[None] * (ctx.n_outputs - len(outputs)))

    @staticmethod
    def reference(meta, constants):
        """The reference loop computing (y, h_T, c_T[, every c_t]) from the 16 differentiable
        inputs."""
        _, reverse, want_states, cell = meta
        rmask, zh, zc, lengths = constants
        return partial(_reference_lstm, cell, reverse, want_states, StepMasks(rmask, (zh, zc)), lengths)


def _reference_lstm(cell, reverse, want_states, masks, lengths, gx, h0, c0, w_hh, b_ih, b_hh,
                    ln_ih_w, ln_ih_b, ln_hh_w, ln_hh_b, ln_c_w, ln_c_b, peep_i, peep_f, peep_o, w_hr):
    """:class:`_FusedLSTM`'s outputs (y, h_T, c_T and, if ``want_states``, every c_t) recomputed by
    the reference loop from its inputs."""
    params = _named(
        weight_hh=w_hh, bias_hh=b_hh, layer_norm_hh_weight=ln_hh_w, layer_norm_hh_bias=ln_hh_b,
        layer_norm_c_weight=ln_c_w, layer_norm_c_bias=ln_c_b, weight_peephole_i=peep_i,
        weight_peephole_f=peep_f, weight_peephole_o=peep_o, weight_hr=w_hr)
    gates = lstm_input_gates(gx, b_ih, ln_ih_w, ln_ih_b)
    run = run_steps(cell, params, gates, (h0, c0), lengths, reverse, masks, want_states)
    per_step_c = (run.states[1],) if want_states else ()
    return run.outputs, run.final_state[0], run.final_state[1], *per_step_c


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
    its block cache), differentiable when ``backward``; the caller checks that the extension runs."""
    module, _ = _extension()
    if backward:
        return _Projection.apply(module, x, w, b)
    return module.project(x.contiguous(), w.detach().contiguous(), None if b is None else b.detach())


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
    description = "C++ fused loop and backward on CPU (Elman, LSTM and GRU with every option)"

    def supports(self, cell: CellSpec, request: RunRequest) -> str | None:
        if _family(cell) is None:
            return f"no fused CPU kernel for the {cell.name!r} cell"
        if request.device.type != "cpu":
            return f"runs on CPU only, not {request.device.type}"
        if request.dtype not in _DTYPES:
            return f"dtype {request.dtype} is not supported (float32, float64)"
        refusal = compiled_kernel_refusal(request, exportable=True)
        if refusal is not None:
            return refusal
        if request.capture == "torch.export" and request.return_states:
            return "torch.export: its exported kernels return no per-step states"
        return _unavailable()

    def yields_to(self, cell: CellSpec, request: RunRequest) -> str | None:
        """For auto dispatch: the executor that should run this request instead, though this one can.

        torch's oneDNN LSTM is faster than the fused loop for the plain LSTM, so auto leaves it to
        ``native`` (which refuses the variants: layer norm, peepholes, masks), except for small
        batch x hidden (<= 2048), where oneDNN's per-step overhead dominates and the fused loop was
        measured 0.11x (B=1, H=64) and 0.71-0.86x (B=16, H=128) of its time (docs/benchmarks.md).
        """
        if type(cell) is LSTMSpec and cell.unsupported_by_torch() is None and not request.has_masks:
            if custom_ops.capturing():  # one custom operator: no graph break, no guard on the batch
                return None
            if request.batch is not None and request.batch * cell.hidden_size <= SMALL_LSTM:
                return None
            return "native"
        return None

    def run(
        self,
        cell: CellSpec,
        params: Params,
        x: Tensor,
        state0: State,
        lengths: Tensor | None = None,
        reverse: bool = False,
        masks: StepMasks | None = None,
        return_states: bool = False,
    ) -> RunResult:
        self.check_runnable(cell, x, masks, return_states)
        family = _family(cell)
        T, B = x.shape[0], x.shape[1]
        is_lstm = family == _LSTM
        h0 = state0[0].contiguous()
        c0 = state0[1].contiguous() if is_lstm else None

        rmask = zh = zc = None
        if masks is not None:
            if masks.recurrent is not None:
                rmask = masks.recurrent.detach().to(x.dtype).expand(B, cell.output_size).contiguous()
            if masks.zoneout is not None:
                zs = tuple(masks.zoneout) + (None,) * (2 - len(masks.zoneout))
                zh = _zoneout(zs[0], T, B, cell.output_size, x)
                if is_lstm:
                    zc = _zoneout(zs[1], T, B, cell.hidden_size, x)
        if lengths is not None:
            lengths = lengths.to(device="cpu", dtype=torch.int64).contiguous()

        def p(name: str) -> Tensor | None:
            t = params.get(name)
            return None if t is None else t.contiguous()

        ln = getattr(cell, "layer_norm", False)
        # without autograd (inference) the kernels keep nothing for backward: no per-step buffers
        backward = needs_backward(x, state0, params)
        # torch.compile (inference) and torch.export record the kernels as custom operators
        as_operator = (custom_ops.capturing() and not return_states
                       and (torch.compiler.is_exporting() or not backward))
        if is_lstm:
            args = (p("weight_hh"), p("bias_ih"), p("bias_hh"),
                    *(p(f"layer_norm_{part}_{kind}") if ln else None
                      for part in ("ih", "hh", "c") for kind in ("weight", "bias")),
                    p("weight_peephole_i"), p("weight_peephole_f"), p("weight_peephole_o"),
                    p("weight_hr"), rmask, zh, zc, lengths)
            if as_operator:
                gx = torch.nn.functional.linear(x, params["weight_ih"])
                y, h, c = torch.ops.rnnkit.fused_lstm(gx, h0, c0, *args, bool(reverse))
                return RunResult(y, (h, c), None)
            module, _ = _extension()
            gx = project(x, params["weight_ih"], None, backward)
            if backward:
                result = _FusedLSTM.apply((module, bool(reverse), bool(return_states), cell), gx,
                                          h0, c0, *args)
            else:
                result = module.lstm_forward(gx, h0.detach(), c0.detach(),
                                             *(None if a is None else a.detach() for a in args),
                                             bool(reverse), bool(return_states), False)[:4]
            outputs, final = result[0], (result[1], result[2])
            # per-step h is the output itself (both zero past each length)
            states = (outputs, result[3]) if return_states else None
            return RunResult(outputs, final, states)

        if ln or as_operator:  # the GRU's input layer norm: the cell's own projection
            gx = cell.project_input(params, x).contiguous()
        else:
            gx = project(x, params["weight_ih"], params.get("bias_ih"), backward)
        # the modReLU threshold goes in the kernels' peephole-i slot (the Elman cell has none)
        args = (p("weight_hh"), p("bias_hh"),
                p("layer_norm_hh_weight") if ln else None, p("layer_norm_hh_bias") if ln else None,
                None, None, p("modrelu_bias"), None, None, None, rmask, zh, None, lengths)
        if as_operator:
            y, h = torch.ops.rnnkit.fused_rnn(family, gx, h0, args[0], args[1], args[2], args[3],
                                              args[6], rmask, zh, lengths, bool(reverse))
            return RunResult(y, (h,), None)
        module, _ = _extension()
        if backward:
            result = _FusedRun.apply((module, family, bool(reverse), cell), gx, h0, None, *args)
        else:
            result = module.forward(family, gx, h0.detach(), None,
                                    *(None if a is None else a.detach() for a in args),
                                    bool(reverse), False)[:2]
        outputs, final = result[0], (result[1],)
        return RunResult(outputs, final, (outputs,) if return_states else None)
