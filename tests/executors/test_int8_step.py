"""The int8 streaming step (``rnnkit.quantize_step``): exactly the dynamic quantization it states
(per-row symmetric int8 weights, per-row symmetric activations, int32 sums), for every cell the
fused step runs; re-quantized after an in-place weight update; never a silent fall back to float."""

from __future__ import annotations

import copy

import pytest
import torch

import rnnkit
from rnnkit.cells import make_cell
from rnnkit.cells.registry import cell_names, option_examples
from rnnkit.executors import fused_cpu

I, H, B = 24, 20, 3


def _fake_quant_rows(t: torch.Tensor) -> torch.Tensor:
    """What int8 with one symmetric scale per row keeps of ``t`` (rows: the last dimension)."""
    flat = t.reshape(-1, t.shape[-1])
    scale = flat.abs().amax(dim=1, keepdim=True) / 127
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return ((flat / scale).round().clamp(-127, 127) * scale).reshape(t.shape)


def _fused_cases():
    for name in cell_names():
        for options in option_examples(name):
            if fused_cpu.kernel_family(make_cell(name, I, H, **options)) is not None:
                yield name, options


CASES = list(_fused_cases())


def _pair(name, options, **kw):
    torch.manual_seed(0)
    module = rnnkit.Recurrent(name, I, H, **options, **kw).eval()
    return module, rnnkit.quantize_step(copy.deepcopy(module))


def _dequantized(module):
    """A float copy whose W_ih and (matrix) W_hh hold what int8 keeps of them."""
    twin = copy.deepcopy(module)
    twin.step_precision = "float"
    with torch.no_grad():
        for layer in range(module.num_layers):
            for name in (f"weight_ih_l{layer}", f"weight_hh_l{layer}"):
                w = getattr(twin, name, None)
                if w is not None and w.dim() == 2:
                    w.copy_(_fake_quant_rows(w))
    return twin


@pytest.mark.parametrize("name,options", CASES, ids=[f"{n}-{o}" for n, o in CASES])
def test_first_step_is_the_stated_quantization(name, options):
    """From a zero state only W_ih, W_hh and x are quantized: the int8 step equals the float step
    with those three rounded as stated."""
    module, int8 = _pair(name, options, num_layers=1)
    x = torch.randn(B, I)
    with torch.no_grad():
        y8, _ = int8.step(x)
        y, _ = _dequantized(module).step(_fake_quant_rows(x))
    torch.testing.assert_close(y8, y, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name,options", [("lstm", {}), ("lstm", {"layer_norm": True, "peephole": True}),
                                          ("rnn_tanh", {}), ("lstm", {"proj_size": 7})])
def test_later_steps_quantize_the_state_too(name, options):
    """Cells where h enters the step only through W_hh: from a random state, the int8 step equals
    the float step given the quantized weights, input and h (c stays float)."""
    module, int8 = _pair(name, options)
    x = torch.randn(B, I)
    state = tuple(torch.randn(1, B, n) for n in module.cell.state_sizes())
    quantized_h = (_fake_quant_rows(state[0]), *state[1:])
    with torch.no_grad():
        y8, _ = int8.step(x, state if len(state) > 1 else state[0])
        y, _ = _dequantized(module).step(_fake_quant_rows(x),
                                         quantized_h if len(state) > 1 else quantized_h[0])
    torch.testing.assert_close(y8, y, rtol=1e-5, atol=1e-5)


def test_stream_stays_near_float_and_two_layers_work():
    module, int8 = _pair("lstm", {}, num_layers=2)
    xs = torch.randn(50, B, I)
    with torch.no_grad():
        s = s8 = None
        worst = 0.0
        for x in xs:
            y, s = module.step(x, s)
            y8, s8 = int8.step(x, s8)
            worst = max(worst, (y - y8).abs().max().item())
    assert 0 < worst < 0.03


def test_in_place_weight_updates_are_quantized_again():
    _, int8 = _pair("gru", {})
    x = torch.randn(B, I)
    with torch.no_grad():
        int8.step(x)
        int8.weight_hh_l0.mul_(0.5)
        int8.weight_ih_l0.add_(0.01)
        state = torch.randn(1, B, H)
        got, _ = int8.step(x, state)
        fresh = rnnkit.quantize_step(copy.deepcopy(int8))
        want, _ = fresh.step(x, state)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_int8_never_runs_another_precision():
    _, int8 = _pair("lstm", {})
    x = torch.randn(B, I)
    with pytest.raises(ValueError, match=r"step_precision='int8'.*gradients are required"):
        int8.step(x)  # grad mode on and the parameters require grad
    with pytest.raises(ValueError, match=r"int8.*float32"), torch.no_grad():
        int8.double().step(x.double())
    with pytest.raises(ValueError, match="step_precision must be one of"):
        int8.step_precision = "int4"
    with pytest.raises(ValueError, match="no rnnkit recurrent layers"):
        rnnkit.quantize_step(torch.nn.Linear(2, 2))


def test_float_again_and_forward_unchanged():
    module, int8 = _pair("lstm", {})
    assert "step(): int8 weights" in rnnkit.explain(int8) and "int8" not in rnnkit.explain(module)
    x = torch.randn(5, B, I)
    with torch.no_grad():
        torch.testing.assert_close(int8(x)[0], module(x)[0], rtol=0, atol=0)  # forward stays float
        rnnkit.quantize_step(int8, "float")
        torch.testing.assert_close(int8.step(x[0])[0], module.step(x[0])[0], rtol=0, atol=0)
