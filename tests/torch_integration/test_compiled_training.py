"""A compiled training step with no graph break at rnnkit's kernels (issue #19): under
``torch.compile`` with autograd the fused executor records ``rnnkit::fused_rnn_train`` (the kernel's
forward, keeping its buffers) and the scan executor ``rnnkit::scan``, whose autograd formulas are the
operators ``rnnkit::fused_rnn_backward`` / ``rnnkit::scan_backward``. Every registered family x its
option examples: ``fullgraph=True`` (a graph break fails), the kernels' operators in the forward and
backward graphs, and gradients equal to eager's; the operators pass ``torch.library.opcheck``
(autograd registration, AOT dispatch with dynamic shapes); double backward raises; eager never calls
the operators."""

from __future__ import annotations

import copy

import pytest
import torch
from torch._dynamo.backends.common import aot_autograd
from torch._functorch.aot_autograd import make_boxed_func
from torch.utils._python_dispatch import TorchDispatchMode

import rnnkit
from conformance.cases import case_id, family_cases
from rnnkit.cells import make_cell
from rnnkit.executors import custom_ops
from rnnkit.executors.kernel_families import declared_kernel_family, kernel_options

pytestmark = pytest.mark.usefixtures("fresh_dynamo")  # compiles many modules (conftest)

T, B, I, H = 5, 3, 4, 6
FORWARD_OPS = {"rnnkit.fused_rnn_train.default", "rnnkit.scan.default"}
BACKWARD_OPS = {"rnnkit.fused_rnn_backward.default", "rnnkit.scan_backward.default"}


class _Recording:
    """An ``aot_eager``-like backend that keeps the targets of the forward and backward graphs."""

    def __init__(self) -> None:
        self.forward: set[str] = set()
        self.backward: set[str] = set()

    def _keep(self, into: set[str]):
        def compiler(gm: torch.fx.GraphModule, _inputs):
            into.update(str(n.target) for n in gm.graph.nodes if n.op == "call_function")
            return make_boxed_func(gm.forward)

        return compiler

    def backend(self):
        return aot_autograd(fw_compiler=self._keep(self.forward), bw_compiler=self._keep(self.backward))


def _loss(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    y, state = module(x)
    state = state if isinstance(state, tuple) else (state,)
    return y.square().sum() + sum(s.square().sum() for s in state)  # every output gets a gradient


def _step(module: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """One training step's gradients: of the input, then of every parameter."""
    module.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_()
    _loss(module, x).backward()
    return [x.grad, *(p.grad for p in module.parameters())]


def _compare(module: torch.nn.Module, x: torch.Tensor, backend, rtol: float, atol: float,
             dynamic: bool | None = False) -> None:
    compiled_module = copy.deepcopy(module)
    compiled = torch.compile(compiled_module, fullgraph=True, backend=backend, dynamic=dynamic)
    names = ["input", *(n for n, _ in module.named_parameters())]
    for got, want, name in zip(_step(compiled, x), _step(module, x), names, strict=True):
        torch.testing.assert_close(got, want, rtol=rtol, atol=atol, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("case", family_cases(), ids=lambda c: case_id(*c))
def test_compiled_training_step_equals_eager_float64(case):
    name, options = case
    torch.manual_seed(0)
    module = rnnkit.Recurrent(name, I, H, 2, **options).double()
    recording = _Recording()
    _compare(module, torch.randn(T, B, I, dtype=torch.float64), recording.backend(), 1e-10, 1e-12)
    if declared_kernel_family(make_cell(name, I, H, **options)) is None:
        # a family with no kernel (one a test registers) runs the reference executor: aten ops only
        assert not (recording.forward | recording.backward) & (FORWARD_OPS | BACKWARD_OPS)
        return
    assert recording.forward & FORWARD_OPS, recording.forward
    assert recording.backward & BACKWARD_OPS, recording.backward


LAYER_OPTIONS = {
    "lstm-bidirectional-zoneout-eval": (lambda: rnnkit.Recurrent(
        "lstm", I, H, 2, bidirectional=True, zoneout=0.2, recurrent_dropout=0.3).eval()),
    "gru-ln-bidirectional": lambda: rnnkit.Recurrent("gru", I, H, 2, layer_norm=True, bidirectional=True),
    "minlstm-bidirectional-zoneout-eval": (lambda: rnnkit.Recurrent(
        "minlstm", I, H, 2, bidirectional=True, zoneout=0.3).eval()),
    "indrnn-bidirectional": lambda: rnnkit.Recurrent("indrnn", I, H, 2, bidirectional=True,
                                                     recurrent_max=0.9),
    "lstm-proj-bidirectional": lambda: rnnkit.LSTM(I, H, 2, proj_size=3, bidirectional=True),
}


@pytest.mark.parametrize("name", list(LAYER_OPTIONS))
def test_compiled_training_step_with_layer_options(name):
    """Both directions, and zoneout at eval (its expected value: a training step at eval, as for
    fine-tuning with the regularizers off; training-mode masks are sampled outside the graph)."""
    torch.manual_seed(0)
    module = LAYER_OPTIONS[name]().double()
    _compare(module, torch.randn(T, B, I, dtype=torch.float64), "aot_eager", 1e-10, 1e-12)


@pytest.mark.parametrize("name", ["lstm", "mingru"])
def test_compiled_training_step_float32_dynamic_shapes(name):
    """float32 with symbolic time and batch; the LSTM's batch x hidden is above
    ``fused_cpu.SMALL_LSTM`` on the second shape (eager runs torch's oneDNN LSTM there, the
    compiled graph the fused kernel). The weight gradients sum 2800 rows in float32, in another
    order in each (torch's GEMM for the projection under compile, the packed kernel in eager):
    rtol 1e-4."""
    torch.manual_seed(0)
    module = rnnkit.Recurrent(name, I, H, 2)
    compiled_module = copy.deepcopy(module)
    compiled = torch.compile(compiled_module, fullgraph=True, backend="aot_eager", dynamic=True)
    for shape in [(T, B, I), (7, 400, I)]:
        x = torch.randn(*shape)
        for got, want in zip(_step(compiled, x), _step(module, x), strict=True):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_compiled_training_step_with_inductor():
    torch.manual_seed(0)
    module = rnnkit.LSTM(I, H, 2)
    _compare(module, torch.randn(T, B, I), "inductor", 1e-5, 1e-6)


@pytest.mark.parametrize("backend", ["aot_eager", "eager"])
def test_compiled_double_backward_raises(backend):
    """Higher-order gradients through a compiled graph raise (AOTAutograd's own error, or the
    backward operators' under a backend without AOTAutograd) rather than come out wrong."""
    torch.manual_seed(0)
    module = rnnkit.Recurrent("gru", I, H).double()
    compiled = torch.compile(module, fullgraph=True, backend=backend)
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(_loss(compiled, x), x, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward"):
        g.square().sum().backward()


class _OperatorLog(TorchDispatchMode):
    """The rnnkit operators dispatched while it is active."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.namespace == "rnnkit":
            self.calls.append(str(func))
        return func(*args, **(kwargs or {}))


def _eager_operator_calls(capturing: bool, monkeypatch) -> list[str]:
    monkeypatch.setattr(custom_ops, "capturing", lambda: capturing)
    with _OperatorLog() as log:
        for name in ("lstm", "gru", "mingru"):
            module = rnnkit.Recurrent(name, I, H, 2, backend="auto")
            _step(module, torch.randn(T, B, I))
            with torch.no_grad():
                module(torch.randn(T, B, I))
    return log.calls


def test_eager_never_calls_the_operators(monkeypatch):
    """Eager training and inference go straight to the extension (an operator's dispatch costs
    microseconds a call): no rnnkit operator is dispatched. The log does see them when the executors
    take their capture path."""
    assert _eager_operator_calls(False, monkeypatch) == []
    assert {"rnnkit.fused_rnn_train.default", "rnnkit.fused_rnn_backward.default",
            "rnnkit.scan.default"} <= set(_eager_operator_calls(True, monkeypatch))


def test_operators_run_in_cpp_once_loaded():
    """After the extensions load, every operator's CPU and autograd kernels are C++ (the Python
    stand-ins that load the extension serve only the calls before)."""
    custom_ops.load_operators()
    for ops in custom_ops.SCHEMAS.values():
        for name in ops:
            table = torch._C._dispatch_dump(f"rnnkit::{name}").splitlines()
            for key in ("CPU: ", "Autograd[alias]: "):
                (line,) = [row for row in table if row.startswith(key)]
                assert "operators.cpp" in line, line


def test_training_graph_has_no_break():
    """The benchmark's models (benchmarks/compile.py): a 2-layer LSTM and layer-norm GRU."""
    for module in (rnnkit.LSTM(I, H, 2), rnnkit.Recurrent("gru", I, H, 2, layer_norm=True)):
        torch._dynamo.reset()
        explanation = torch._dynamo.explain(module)(torch.randn(T, B, I))
        assert explanation.graph_break_count == 0, explanation.break_reasons


# --- the operators themselves -------------------------------------------------------------------

CHECKS = ("test_schema", "test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic")


def _rand(*shape, dtype=torch.float64):
    return torch.randn(*shape, generator=_rand.g, dtype=dtype)


_rand.g = torch.Generator().manual_seed(0)


def _train_args(name, options, lengths, zone, rmask):
    """rnnkit::fused_rnn_train's arguments for a random problem of this cell (as the executor passes
    them: the LSTM takes b_ih and LN_ih itself), the tensors requiring grad."""
    cell = make_cell(name, I, H, **options)
    lstm = cell.kernel_family() == "lstm"
    params = {n: (_rand(*shape) * 0.5 + (1 if "layer_norm" in n and n.endswith("weight") else 0))
              .requires_grad_()
              for n, shape in cell.param_shapes().items()
              if n != "weight_ih" and (lstm or n not in ("bias_ih", "layer_norm_ih_weight",
                                                         "layer_norm_ih_bias"))}
    G = cell.param_shapes()["weight_ih"][0]
    P = cell.output_size
    c0 = _rand(B, H).requires_grad_() if lstm else None
    args = (cell.kernel_family(), custom_ops.encode_options(kernel_options(cell)), ",".join(params),
            _rand(T, B, G).requires_grad_(), _rand(B, P).requires_grad_(), c0, list(params.values()),
            _rand(B, P).abs() if rmask else None, zone(T, B, P), zone(T, B, H) if lstm else None,
            lengths, True)
    return (*args, custom_ops.train_layout(*args[:10]))


FAMILIES = [pytest.param(name, options, id=case_id(name, options)) for name, options in [
    ("rnn_tanh", {}), ("rnn_modrelu", {}), ("gru", {"layer_norm": True}),
    ("indrnn", {"nonlinearity": "tanh", "recurrent_max": 0.5}), ("lstm", {}),
    ("lstm", {"layer_norm": True, "peephole": True, "proj_size": 2})]]


@pytest.mark.parametrize(("name", "options"), FAMILIES)
@pytest.mark.parametrize("masks", ["none", "masks-lengths"])
def test_fused_rnn_train_operator(name, options, masks):
    """opcheck, and the operator's gradients equal the autograd Function's (the eager path)."""
    with_masks = masks != "none"
    args = _train_args(name, options, torch.tensor([5, 2, 4]) if with_masks else None,
                       (lambda *shape: _rand(*shape).abs().clamp(max=0.9)) if with_masks
                       else (lambda *shape: None), with_masks)
    torch.library.opcheck(torch.ops.rnnkit.fused_rnn_train, args, test_utils=CHECKS)
    y, h, c, _ = torch.ops.rnnkit.fused_rnn_train(*args)
    lstm = args[5] is not None
    loss = y.square().sum() + h.sum() + (c.square().sum() if lstm else 0)
    inputs = [args[3], args[4], *([args[5]] if lstm else []), *args[6]]
    got = torch.autograd.grad(loss, inputs)

    from rnnkit.executors.fused_cpu import _extension, _FusedRun

    family, options_text, names = args[:3]
    meta = (_extension()[0], family, custom_ops._decode_options(options_text), tuple(names.split(",")),
            lstm, lstm, True, False, None)
    out = _FusedRun.apply(meta, *args[3:6], *args[6], *args[7:11])
    loss = out[0].square().sum() + out[1].sum() + (out[2].square().sum() if lstm else 0)
    for g, w in zip(got, torch.autograd.grad(loss, inputs), strict=True):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)


def test_fused_rnn_backward_operator():
    args = _train_args("lstm", {"layer_norm": True}, torch.tensor([5, 5, 3]),
                       lambda *shape: torch.tensor(0.2, dtype=torch.float64), True)
    args = tuple(a.detach() if isinstance(a, torch.Tensor) else
                 [t.detach() if isinstance(t, torch.Tensor) else t for t in a] if isinstance(a, list) else a
                 for a in args)
    y, h, c, saved = torch.ops.rnnkit.fused_rnn_train(*args)
    family, options, names, gx, h0, c0, params, rmask, zh, zc, lengths, reverse, layout = args
    backward_args = (family, options, names, _rand(*y.shape), _rand(*h.shape), _rand(*c.shape), saved,
                     layout, gx, h0, c0, params, rmask, zh, zc, lengths, reverse)
    torch.library.opcheck(torch.ops.rnnkit.fused_rnn_backward, backward_args,
                          test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_dynamic"))


@pytest.mark.parametrize("family", [0, 1])
def test_scan_operator_autograd(family):
    gx = _rand(T, B, (2 if family == 0 else 3) * H).requires_grad_()
    h0 = _rand(B, H).requires_grad_()
    args = (family, family == 0, gx, h0, torch.tensor(0.1, dtype=torch.float64), torch.tensor([5, 5, 2]),
            True)
    torch.library.opcheck(torch.ops.rnnkit.scan, args, test_utils=CHECKS)
    torch.autograd.gradcheck(lambda g, h: torch.ops.rnnkit.scan(family, family == 0, g, h, *args[4:]),
                             (gx, h0))
    y, _ = torch.ops.rnnkit.scan(*args)
    dy = _rand(*y.shape)
    backward_args = (family, family == 0, gx.detach(), h0.detach(), y.detach(), dy, None, *args[4:])
    torch.library.opcheck(torch.ops.rnnkit.scan_backward, backward_args,
                          test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_dynamic"))


@pytest.mark.parametrize("bias", [False, True])
def test_project_operator(bias):
    """The packed input projection a compiled training step keeps (float32: the packed kernel from
    256 rows; float64: BLAS)."""
    for dtype, rows in ((torch.float32, 300), (torch.float64, 7)):
        x = _rand(rows, B, I, dtype=dtype).requires_grad_()
        w = _rand(4 * H, I, dtype=dtype).requires_grad_()
        b = _rand(4 * H, dtype=dtype).requires_grad_() if bias else None
        torch.library.opcheck(torch.ops.rnnkit.project, (x, w, b), test_utils=CHECKS,
                              atol=1e-4 if dtype == torch.float32 else None,
                              rtol=1e-4 if dtype == torch.float32 else None)
        dgx = _rand(rows, B, 4 * H, dtype=dtype)
        torch.library.opcheck(torch.ops.rnnkit.project_backward,
                              (dgx, x.detach(), w.detach(), True, True, bias),
                              test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_dynamic"))
    torch.autograd.gradcheck(torch.ops.rnnkit.project, (x, w, b))
