"""The kernels as torch.library custom operators (inference): schema and fake-tensor checks, the
operators equal the extension's direct calls, and graph capture through them."""

from __future__ import annotations

import pytest
import torch

import rnnkit
from rnnkit.cells import make_cell
from rnnkit.executors import custom_ops  # noqa: F401  (registers the operators)
from rnnkit.executors.fused_cpu import _family

CHECKS = ("test_schema", "test_faketensor")
T, B, I, H = 5, 3, 4, 6


def _rand(*shape):
    return torch.randn(*shape, generator=_rand.g)


_rand.g = torch.Generator().manual_seed(0)


@pytest.mark.parametrize(("name", "layer_norm"), [("rnn_tanh", False), ("rnn_relu", False),
                                                   ("rnn_modrelu", False), ("gru", False), ("gru", True)])
@pytest.mark.parametrize("lengths", [None, torch.tensor([5, 2, 4])])
def test_fused_rnn_operator(name, layer_norm, lengths):
    G = 3 * H if name == "gru" else H
    args = (_family(make_cell(name, I, H)), _rand(T, B, G), _rand(B, H), _rand(G, H), _rand(G),
            _rand(G) + 1 if layer_norm else None, _rand(G) if layer_norm else None,
            _rand(H) if name == "rnn_modrelu" else None, _rand(B, H).abs(), torch.tensor(0.2),
            lengths, True)
    torch.library.opcheck(torch.ops.rnnkit.fused_rnn, args, test_utils=CHECKS)
    y, h = torch.ops.rnnkit.fused_rnn(*args)
    assert y.shape == (T, B, H) and h.shape == (B, H) and torch.isfinite(y).all()


@pytest.mark.parametrize("options", [{}, {"layer_norm": True, "peephole": True, "proj_size": 2}])
def test_fused_lstm_operator(options):
    P = options.get("proj_size") or H
    ln = options.get("layer_norm")
    peep = options.get("peephole")
    args = (_rand(T, B, 4 * H), _rand(B, P), _rand(B, H), _rand(4 * H, P), _rand(4 * H), _rand(4 * H),
            *((_rand(n) + 1, _rand(n)) if ln else (None, None) for n in (4 * H, 4 * H, H)),
            *((_rand(H),) * 3 if peep else (None,) * 3), _rand(P, H) if P != H else None,
            None, _rand(T, B, P).sigmoid(), None, torch.tensor([5, 1, 3]), False)
    args = (*args[:6], *args[6][0:2], *args[7][0:2], *args[8][0:2], *args[9:])
    torch.library.opcheck(torch.ops.rnnkit.fused_lstm, args, test_utils=CHECKS)
    y, h, c = torch.ops.rnnkit.fused_lstm(*args)
    assert y.shape == (T, B, P) and h.shape == (B, P) and c.shape == (B, H)


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
}


@pytest.mark.parametrize("name", list(CAPTURED))
def test_export_with_dynamic_batch_and_time_records_the_kernel(name):
    """One rnnkit operator per layer and direction in the graph, right for shapes it did not see
    (lengths too)."""
    torch.manual_seed(0)
    module = CAPTURED[name]().eval()
    x = torch.randn(5, 3, 4)
    dims = {0: torch.export.Dim("T", min=2, max=512), 1: torch.export.Dim("B", min=2, max=512)}
    program = torch.export.export(module, (x,), dynamic_shapes=({**dims},))
    targets = [str(n.target) for n in program.graph.nodes if n.op == "call_function"]
    assert any(t.startswith("rnnkit.") for t in targets), targets
    for shape in [(9, 7, 4), (2, 2, 4), (40, 5, 4)]:
        other = torch.randn(*shape)
        torch.testing.assert_close(program.module()(other), module(other))


@pytest.mark.parametrize("name", ["lstm", "gru-ln-bidirectional", "minlstm-bidirectional"])
def test_compile_fullgraph_inference(name):
    torch.manual_seed(0)
    module = CAPTURED[name]().eval()
    compiled = torch.compile(module, fullgraph=True, backend="aot_eager", dynamic=True)
    with torch.no_grad():
        for shape in [(5, 3, 4), (8, 40, 4)]:  # B*H above the small-LSTM threshold too
            x = torch.randn(*shape)
            torch.testing.assert_close(compiled(x), module(x))
