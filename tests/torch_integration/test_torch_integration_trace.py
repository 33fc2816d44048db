"""torch.jit.trace, torch.onnx.export(dynamo=False) (which traces), torch.export and torch.jit.script
on rnnkit's modules: the recording computes what torch.nn's would for every input shape, or the call
raises an error that names the feature and the way out (issue #24).

Before: a trace under ``no_grad`` recorded the fused C++ kernel's output as a constant (other shapes
gave the traced shape back), the reference loop was unrolled for the traced length, and scripting
failed in TorchScript's parser.
"""

from __future__ import annotations

import io
import warnings

import pytest
import torch
from torch import nn

import rnnkit
from rnnkit.errors import BackendUnavailable

I, H = 4, 8
DROP_INS = {"LSTM": (nn.LSTM, rnnkit.LSTM), "GRU": (nn.GRU, rnnkit.GRU), "RNN": (nn.RNN, rnnkit.RNN)}


def _pair(name: str, **kwargs) -> tuple[nn.Module, nn.Module]:
    theirs_cls, ours_cls = DROP_INS[name]
    theirs = theirs_cls(I, H, **kwargs)
    ours = ours_cls(I, H, **kwargs)
    ours.load_state_dict(theirs.state_dict())
    return theirs.eval(), ours.eval()


def _trace(module: nn.Module, x: torch.Tensor, grad: bool):
    with torch.set_grad_enabled(grad), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return torch.jit.trace(module, (x,), check_trace=False)


@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])
@pytest.mark.parametrize("kwargs", [{}, {"num_layers": 2, "bidirectional": True}], ids=["1", "2bi"])
@pytest.mark.parametrize("name", list(DROP_INS))
@pytest.mark.parametrize("backend", ["auto", "native"])
def test_trace_matches_torch_on_other_shapes(name, backend, kwargs, grad):
    """auto at batch 2 would pick fused_cpu (LSTM: batch x hidden <= 2048); under the tracer it runs
    torch's kernels, which the trace records as one op, right for every T and B."""
    torch.manual_seed(0)
    theirs, ours = _pair(name, **kwargs)
    ours.backend = backend
    traced = _trace(ours, torch.randn(5, 2, I), grad)
    for shape in [(5, 2, I), (9, 3, I), (1, 17, I)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            got, want = traced(x), theirs(x)
        torch.testing.assert_close(got[0], want[0], atol=1e-5, rtol=1e-5)


def test_trace_of_a_model_with_a_drop_in_inside():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(I, I), rnnkit.GRU(I, H, batch_first=True)).eval()
    traced = _trace(model, torch.randn(2, 5, I), grad=False)
    x = torch.randn(6, 11, I)
    with torch.no_grad():
        torch.testing.assert_close(traced(x)[0], model(x)[0])


@pytest.mark.parametrize(
    "make",
    [
        lambda: rnnkit.LSTM(I, H, backend="reference"),
        lambda: rnnkit.GRU(I, H, layer_norm=True),
        lambda: rnnkit.LSTM(I, H, peephole=True),
        lambda: rnnkit.LSTM(I, H, zoneout=0.1).eval(),
        lambda: rnnkit.Recurrent("lstm", I, H, layer_norm=True),
        lambda: rnnkit.Recurrent("mingru", I, H),
        lambda: rnnkit.GRU(I, H, 2, variational_dropout=0.2).train(),
        lambda: rnnkit.LSTM(I, H, weight_drop=0.2).train(),
    ],
    ids=["reference", "gru-ln", "peephole", "zoneout-eval", "recurrent-ln", "mingru", "variational",
         "weight-drop"],
)
@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])
def test_trace_refuses_what_it_would_record_wrongly(make, grad):
    module = make()
    with pytest.raises(RuntimeError, match=r"torch\.jit\.trace cannot record this .*torch\.export"):
        _trace(module, torch.randn(5, 2, I), grad)


def test_trace_with_a_named_compiled_backend_names_the_way_out():
    module = rnnkit.GRU(I, H, backend="fused_cpu")
    with pytest.raises(BackendUnavailable, match=r"torch\.jit\.trace cannot record its C\+\+ kernels.*'native'"):
        _trace(module, torch.randn(5, 2, I), grad=False)


@pytest.mark.parametrize("cell", ["RNNCell", "GRUCell", "LSTMCell"])
def test_cells_trace_like_torch(cell):
    """The cells are Python over torch ops: the trace is right for other batch sizes."""
    torch.manual_seed(0)
    theirs = getattr(nn, cell)(I, H)
    ours = getattr(rnnkit, cell)(I, H)
    ours.load_state_dict(theirs.state_dict())
    traced = _trace(ours, torch.randn(2, I), grad=False)
    x = torch.randn(7, I)
    torch.testing.assert_close(traced(x), theirs(x))


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")
def test_legacy_onnx_export_is_refused_where_tracing_is():
    """torch.onnx.export(dynamo=False) records the model with torch.jit's tracer: the refusal comes
    before ONNX is needed, so this runs without the onnx package."""
    module = rnnkit.LSTM(I, H, backend="reference").eval()
    with pytest.raises(RuntimeError, match=r"torch\.jit\.trace cannot record this LSTM"):
        torch.onnx.export(module, (torch.randn(5, 2, I),), io.BytesIO(), dynamo=False)


def test_legacy_onnx_export_of_a_plain_layer():
    pytest.importorskip("onnx")
    module = rnnkit.GRU(I, H).eval()
    f = io.BytesIO()
    torch.onnx.export(module, (torch.randn(5, 2, I),), f, dynamo=False)
    assert f.getvalue()


@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_export_matches_torch(backend):
    """torch.export (non-strict) records torch's kernels for auto (the fused C++ kernels refuse to be
    recorded) and the reference loop for its traced length, with shape guards."""
    torch.manual_seed(0)
    theirs, ours = _pair("LSTM")
    ours.backend = backend
    x = torch.randn(5, 2, I)
    program = torch.export.export(ours, (x,))
    x2 = torch.randn(5, 2, I)
    torch.testing.assert_close(program.module()(x2)[0], theirs(x2)[0], atol=1e-5, rtol=1e-5)


def test_export_with_a_named_compiled_backend_matches_or_is_refused():
    """Refused while the kernels are no custom operators export can hold (issue #19)."""
    torch.manual_seed(0)
    theirs, ours = _pair("GRU")
    ours.backend = "fused_cpu"
    x = torch.randn(5, 2, I)
    try:
        program = torch.export.export(ours, (x,))
    except BackendUnavailable as e:
        assert "torch.export cannot record its C++ kernels" in str(e)
        return
    torch.testing.assert_close(program.module()(x)[0], theirs(x)[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "make",
    [lambda: rnnkit.LSTM(I, H), lambda: rnnkit.GRUCell(I, H), lambda: rnnkit.Recurrent("gru", I, H),
     lambda: nn.Sequential(nn.Linear(I, I), rnnkit.RNN(I, H))],
    ids=["LSTM", "GRUCell", "Recurrent", "inside-Sequential"],
)
def test_script_is_refused_with_the_ways_out(make):
    with pytest.raises(RuntimeError, match=r"torch\.jit\.script cannot compile rnnkit's .*torch\.compile"):
        torch.jit.script(make())


class _Streamer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = rnnkit.LSTM(I, H, 2).eval()

    def forward(self, x_t: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
        return self.rnn.step(x_t, (h, c))


def test_traced_step_runs_the_python_step_right_for_other_batches():
    """step()'s C++ stepper cannot be recorded (the trace failed: "no observable data dependence");
    under a tracer step() takes the Python step."""
    torch.manual_seed(0)
    module = _Streamer()
    with torch.no_grad():
        traced = torch.jit.trace(module, (torch.randn(2, I), torch.zeros(2, 2, H), torch.zeros(2, 2, H)))
        args = (torch.randn(5, I), torch.randn(2, 5, H), torch.randn(2, 5, H))
        got, want = traced(*args), module(*args)
    for a, b in zip(torch.utils._pytree.tree_leaves(got), torch.utils._pytree.tree_leaves(want), strict=True):
        torch.testing.assert_close(a, b)
