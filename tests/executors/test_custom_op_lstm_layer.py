"""``rnnkit::lstm_layer``: a captured plain LSTM layer picks its kernel when it runs (torch's oneDNN
LSTM above ``fused_cpu.SMALL_LSTM`` = batch x hidden, else the fused loop), as eager ``auto`` does.
opcheck on both sides of the threshold; compiled (fullgraph, dynamic) and exported modules record it
and equal eager on both sides; variants torch cannot run keep ``rnnkit::fused_rnn``."""

from __future__ import annotations

import pytest
import torch

import rnnkit
from rnnkit.executors import custom_ops  # noqa: F401  (registers the operators)
from rnnkit.executors.fused_cpu import SMALL_LSTM

pytestmark = pytest.mark.usefixtures("fresh_dynamo")  # compiles many modules (conftest)

I, H = 4, 64
CHECKS = ("test_schema", "test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic")


def _args(batch: int, bias: bool = True) -> tuple:
    g = torch.Generator().manual_seed(batch)

    def r(*shape):
        return torch.randn(*shape, generator=g) * 0.3

    biases = (r(4 * H), r(4 * H)) if bias else (None, None)
    return ("", r(5, batch, I), r(batch, H), r(batch, H), r(4 * H, I), r(4 * H, H), *biases, SMALL_LSTM)


@pytest.mark.parametrize("batch", [2, SMALL_LSTM // H + 1])
@pytest.mark.parametrize("bias", [True, False])
def test_operator_on_both_sides_of_the_threshold_equals_torch_lstm(batch, bias):
    args = _args(batch, bias)
    torch.library.opcheck(torch.ops.rnnkit.lstm_layer, args, test_utils=CHECKS)
    y, h, c = torch.ops.rnnkit.lstm_layer(*args)
    _, x, h0, c0, w_ih, w_hh, b_ih, b_hh, _ = args
    lstm = torch.nn.LSTM(I, H, bias=bias)
    with torch.no_grad():
        for name, t in (("weight_ih_l0", w_ih), ("weight_hh_l0", w_hh), ("bias_ih_l0", b_ih), ("bias_hh_l0", b_hh)):
            if t is not None:
                getattr(lstm, name).copy_(t)
        want, (h_t, c_t) = lstm(x, (h0[None], c0[None]))
    for got, expected in ((y, want), (h, h_t[0]), (c, c_t[0])):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def _targets(program) -> list[str]:
    return [str(n.target) for n in program.graph.nodes if n.op == "call_function" and "rnnkit" in str(n.target)]


@pytest.mark.parametrize(("make", "op"), [
    (lambda: rnnkit.LSTM(I, H, 2), "rnnkit.lstm_layer.default"),
    (lambda: rnnkit.Recurrent("lstm", I, H, layer_norm=True), "rnnkit.fused_rnn.default"),
    (lambda: rnnkit.LSTM(I, H, bidirectional=True), "rnnkit.fused_rnn.default"),  # the reverse direction
])
def test_export_and_compile_record_the_operator_and_equal_eager(make, op):
    torch.manual_seed(0)
    module = make().eval()
    dims = {0: torch.export.Dim("T", min=2, max=512), 1: torch.export.Dim("B", min=2, max=512)}
    program = torch.export.export(module, (torch.randn(5, 3, I),), dynamic_shapes=({**dims},))
    assert op in _targets(program)
    compiled = torch.compile(module, fullgraph=True, backend="aot_eager", dynamic=True)
    with torch.no_grad():
        for batch in (3, SMALL_LSTM // H + 5):  # the fused loop, then torch's kernel for lstm_layer
            x = torch.randn(6, batch, I)
            want = module(x)
            torch.testing.assert_close(program.module()(x), want, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(compiled(x), want, atol=1e-5, rtol=1e-5)
