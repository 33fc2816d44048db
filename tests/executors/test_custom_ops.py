"""The kernels as torch.library custom operators (inference): schema and fake-tensor checks, the
operators equal the extension's direct calls, and graph capture through them."""

from __future__ import annotations

import pytest
import torch

import rnnkit
from rnnkit.cells import make_cell
from rnnkit.executors import custom_ops  # (importing it registers the operators)
from rnnkit.executors.kernel_families import kernel_options

pytestmark = pytest.mark.usefixtures("fresh_dynamo")  # compiles many modules (conftest)

CHECKS = ("test_schema", "test_faketensor")
T, B, I, H = 5, 3, 4, 6


def _rand(*shape):
    return torch.randn(*shape, generator=_rand.g)


_rand.g = torch.Generator().manual_seed(0)


def _operator_args(name, options, lengths, zh, rmask):
    """rnnkit::fused_rnn's arguments for a random problem of this cell: its parameters by name as
    the executor passes them (the LSTM takes b_ih and LN_ih itself, the others get gx with them)."""
    cell = make_cell(name, I, H, **options)
    lstm = cell.kernel_family() == "lstm"
    params = {n: _rand(*shape) + (1 if "layer_norm" in n and n.endswith("weight") else 0)
              for n, shape in cell.param_shapes().items()
              if n != "weight_ih" and (lstm or n not in ("bias_ih", "layer_norm_ih_weight",
                                                         "layer_norm_ih_bias"))}
    G = cell.param_shapes()["weight_ih"][0]
    c0 = _rand(B, H) if lstm else None
    return (cell.kernel_family(), custom_ops.encode_options(kernel_options(cell)), ",".join(params),
            _rand(T, B, G), _rand(B, cell.output_size), c0, list(params.values()),
            rmask(cell), zh(cell), zh(cell) if lstm else None, lengths, True)


@pytest.mark.parametrize(("name", "options"), [
    ("rnn_tanh", {}), ("rnn_relu", {}), ("rnn_modrelu", {}), ("gru", {}), ("gru", {"layer_norm": True}),
    ("indrnn", {}), ("indrnn", {"nonlinearity": "tanh", "recurrent_max": 0.5}),
    ("lstm", {}), ("lstm", {"layer_norm": True, "peephole": True, "proj_size": 2})])
@pytest.mark.parametrize("lengths", [None, torch.tensor([5, 2, 4])])
def test_fused_rnn_operator(name, options, lengths):
    args = _operator_args(name, options, lengths, lambda cell: torch.tensor(0.2),
                          lambda cell: _rand(B, cell.output_size).abs())
    torch.library.opcheck(torch.ops.rnnkit.fused_rnn, args, test_utils=CHECKS)
    y, h, c = torch.ops.rnnkit.fused_rnn(*args)
    P = args[4].shape[-1]
    assert y.shape == (T, B, P) and h.shape == (B, P) and torch.isfinite(y).all()
    assert c.shape == ((B, H) if name == "lstm" else (0,))


def test_scan_operator():
    for family, act_g in ((0, True), (1, False)):
        args = (family, act_g, _rand(T, B, (2 if family == 0 else 3) * H), _rand(B, H),
                torch.tensor(0.1), torch.tensor([5, 5, 2]), True)
        torch.library.opcheck(torch.ops.rnnkit.scan, args, test_utils=CHECKS)


CAPTURED = {
    "lstm": lambda: rnnkit.LSTM(4, 6, 2),
    "lstm-ln-peephole-proj": lambda: rnnkit.Recurrent("lstm", 4, 6, 2, layer_norm=True, peephole=True,
                                                      proj_size=3),
    "gru-ln-bidirectional": lambda: rnnkit.Recurrent("gru", 4, 6, 2, layer_norm=True, bidirectional=True),
    "rnn_modrelu": lambda: rnnkit.Recurrent("rnn_modrelu", 4, 6),
    "mingru": lambda: rnnkit.Recurrent("mingru", 4, 6, 2),
    "minlstm-bidirectional": lambda: rnnkit.Recurrent("minlstm", 4, 6, bidirectional=True),
    "lstm-zoneout": lambda: rnnkit.Recurrent("lstm", 4, 6, zoneout=0.2),
    "indrnn-bidirectional": lambda: rnnkit.Recurrent("indrnn", 4, 6, 2, bidirectional=True,
                                                     recurrent_max=0.9),
}


DTYPES = [torch.float32, torch.bfloat16]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", list(CAPTURED))
def test_export_with_dynamic_batch_and_time_records_the_kernel(name, dtype):
    """One rnnkit operator per layer and direction in the graph, right for shapes it did not see
    (lengths too)."""
    torch.manual_seed(0)
    module = CAPTURED[name]().eval().to(dtype)
    x = torch.randn(5, 3, 4, dtype=dtype)
    dims = {0: torch.export.Dim("T", min=2, max=512), 1: torch.export.Dim("B", min=2, max=512)}
    program = torch.export.export(module, (x,), dynamic_shapes=({**dims},))
    targets = [str(n.target) for n in program.graph.nodes if n.op == "call_function"]
    assert any(t.startswith("rnnkit.") for t in targets), targets
    for shape in [(9, 7, 4), (2, 2, 4), (40, 5, 4)]:
        other = torch.randn(*shape, dtype=dtype)
        torch.testing.assert_close(program.module()(other), module(other))


@pytest.mark.parametrize("name", ["lstm", "gru-ln-bidirectional", "minlstm-bidirectional",
                                  "indrnn-bidirectional"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_compile_fullgraph_inference(name, dtype):
    torch.manual_seed(0)
    module = CAPTURED[name]().eval().to(dtype)
    compiled = torch.compile(module, fullgraph=True, backend="aot_eager", dynamic=True)
    with torch.no_grad():
        for shape in [(5, 3, 4), (8, 40, 4)]:  # B*H above the small-LSTM threshold too
            x = torch.randn(*shape, dtype=dtype)
            torch.testing.assert_close(compiled(x), module(x))
