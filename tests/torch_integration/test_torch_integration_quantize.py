"""Dynamic quantization of models holding rnnkit's layers (issue #24).

``torch.ao.quantization.quantize_dynamic(model, {nn.LSTM})`` picks modules by exact type: rnnkit's
drop-ins are no torch.nn subclasses, so it silently leaves them in float32 (documented below).
``rnnkit.quantize_dynamic`` converts them to their torch.nn twins first: its result equals torch's
for the torch.nn model with the same weights, and it warns for each rnnkit layer it leaves in float.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import rnnkit

pytestmark = pytest.mark.filterwarnings("ignore:torch.ao.quantization is deprecated", "ignore:.*quantize_per_tensor")
I, H = 8, 16


class Model(nn.Module):
    def __init__(self, ns) -> None:
        super().__init__()
        self.rnn = ns.LSTM(I, H, 2, bidirectional=True)
        self.gru = ns.GRU(2 * H, H)
        self.cell = ns.GRUCell(H, H)
        self.head = nn.Linear(H, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.gru(self.rnn(x)[0])[0]
        return self.head(self.cell(y[-1]))


def _twins() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    theirs = Model(nn).eval()
    ours = Model(rnnkit).eval()
    ours.load_state_dict(theirs.state_dict())
    return theirs, ours


def test_torch_quantize_dynamic_leaves_rnnkit_layers_in_float():
    """What the issue reports, kept as a test: if torch ever picks them up, rnnkit.quantize_dynamic
    is no longer needed."""
    _, ours = _twins()
    quantized = torch.ao.quantization.quantize_dynamic(ours, {nn.LSTM, nn.GRU, nn.GRUCell, nn.Linear})
    assert type(quantized.rnn) is rnnkit.LSTM and quantized.rnn.weight_ih_l0.dtype == torch.float32
    assert type(quantized.head) is not nn.Linear  # only torch's own modules were quantized


@pytest.mark.parametrize("dtype", [torch.qint8, torch.float16])
@pytest.mark.parametrize("spec", [None, "torch-types", "rnnkit-types"])
def test_matches_torch_on_the_torch_model(spec, dtype):
    theirs, ours = _twins()
    torch_types = {nn.LSTM, nn.GRU, nn.GRUCell, nn.Linear}
    types = {"torch-types": torch_types,
             "rnnkit-types": {rnnkit.LSTM, rnnkit.GRU, rnnkit.GRUCell, nn.Linear}}.get(spec)
    want_model = torch.ao.quantization.quantize_dynamic(theirs, types and torch_types, dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # nothing left in float: no warning
        got_model = rnnkit.quantize_dynamic(ours, types, dtype=dtype)
    for name in ("rnn", "gru", "cell", "head"):
        assert type(getattr(got_model, name)) is type(getattr(want_model, name)), name
    assert type(ours.rnn) is rnnkit.LSTM  # not in place by default
    x = torch.randn(5, 3, I)
    torch.testing.assert_close(got_model(x), want_model(x), atol=0, rtol=0)


def test_quantizes_only_the_requested_types():
    _, ours = _twins()
    quantized = rnnkit.quantize_dynamic(ours, {nn.GRU})
    assert type(quantized.rnn) is rnnkit.LSTM and type(quantized.head) is nn.Linear
    assert isinstance(quantized.gru, torch.ao.nn.quantized.dynamic.GRU)


def test_a_layer_itself_and_in_place():
    torch.manual_seed(0)
    theirs = nn.LSTM(I, H)
    ours = rnnkit.LSTM(I, H)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(5, 2, I)
    quantized = rnnkit.quantize_dynamic(ours, inplace=True)
    want = torch.ao.quantization.quantize_dynamic(theirs, {nn.LSTM})
    torch.testing.assert_close(quantized(x)[0], want(x)[0], atol=0, rtol=0)


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda: rnnkit.LSTM(I, H, layer_norm=True), "layer_norm"),
        (lambda: rnnkit.GRU(I, H, zoneout=0.1), "zoneout"),
        (lambda: rnnkit.LSTMCell(I, H, peephole=True), "peephole"),
        (lambda: rnnkit.Recurrent("lstm", I, H), "unsupported module Recurrent"),
        (lambda: rnnkit.LSTM(I, H, proj_size=3), "no proj_size"),
    ],
    ids=["layer_norm", "zoneout", "peephole-cell", "Recurrent", "proj_size"],
)
def test_warns_for_each_layer_left_in_float(make, why):
    model = nn.Sequential(make())
    with pytest.warns(UserWarning, match=rf"left these layers in floating point .*0: .*{why}"):
        quantized = rnnkit.quantize_dynamic(model)
    assert type(quantized[0]) is type(model[0])
    assert all(p.dtype == torch.float32 for p in quantized[0].parameters())


def test_refuses_a_qconfig_dict():
    with pytest.raises(TypeError, match="set of module types"):
        rnnkit.quantize_dynamic(rnnkit.LSTM(I, H), {nn.LSTM: torch.ao.quantization.default_dynamic_qconfig})
