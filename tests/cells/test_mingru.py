"""minGRU / minLSTM cells: equations (Feng et al. 2024), parameters, options and the layer API."""

from __future__ import annotations

import pytest
import torch

import rnnkit
from rnnkit.cells import MinGRUSpec, MinLSTMSpec, make_cell
from rnnkit.cells.mingru import g


def test_g_is_the_papers_positive_activation():
    x = torch.tensor([-30.0, -2.0, -1e-3, 0.0, 1e-3, 2.0], dtype=torch.float64)
    expect = torch.cat([torch.sigmoid(x[:3]), x[3:] + 0.5])
    torch.testing.assert_close(g(x), expect)
    assert (g(torch.linspace(-50, 50, 1001)) > 0).all()


def _params(cell, scale=1.0, dtype=torch.float64):
    torch.manual_seed(0)
    return {k: torch.randn(s, dtype=dtype) * scale for k, s in cell.param_shapes().items()}


def test_mingru_step_matches_the_paper():
    cell = MinGRUSpec(3, 4)
    p = _params(cell)
    x, h = torch.randn(2, 3, dtype=torch.float64), torch.randn(2, 4, dtype=torch.float64)
    pre = x @ p["weight_ih"].T + p["bias_ih"]
    z, ht = torch.sigmoid(pre[:, :4]), g(pre[:, 4:])
    (out,) = cell.step(p, cell.project_input(p, x), (h,))
    torch.testing.assert_close(out, (1 - z) * h + z * ht)
    ident = MinGRUSpec(3, 4, activation="identity")
    (out,) = ident.step(p, ident.project_input(p, x), (h,))
    torch.testing.assert_close(out, (1 - z) * h + z * pre[:, 4:])


def test_minlstm_step_matches_the_paper():
    cell = MinLSTMSpec(3, 4)
    p = _params(cell)
    x, h = torch.randn(2, 3, dtype=torch.float64), torch.randn(2, 4, dtype=torch.float64)
    pre = x @ p["weight_ih"].T + p["bias_ih"]
    f, i, ht = torch.sigmoid(pre[:, :4]), torch.sigmoid(pre[:, 4:8]), g(pre[:, 8:])
    (out,) = cell.step(p, cell.project_input(p, x), (h,))
    torch.testing.assert_close(out, f / (f + i) * h + i / (f + i) * ht)


def test_minlstm_normalisation_survives_saturated_gates():
    cell = MinLSTMSpec(1, 3)
    H = 3
    gx = torch.tensor([[-200.0, -100.0, -300.0, -200.0, -300.0, -100.0, 1.0, 1.0, 1.0]])
    assert gx.shape[-1] == 3 * H
    a, b = cell.scan_coefficients(gx)
    assert torch.isfinite(a).all() and torch.isfinite(b).all()
    # f = i (both ~e^-200 in exact arithmetic): f' = 1/2; f >> i: f' -> 1; f << i: f' -> 0
    torch.testing.assert_close(a, torch.tensor([[0.5, 1.0, 0.0]]))


def test_parameters_have_torch_names_and_no_weight_hh():
    m = rnnkit.Recurrent("mingru", 5, 7, num_layers=2, bidirectional=True)
    names = [n for n, _ in m.named_parameters()]
    assert names == ["weight_ih_l0", "bias_ih_l0", "weight_ih_l0_reverse", "bias_ih_l0_reverse",
                     "weight_ih_l1", "bias_ih_l1", "weight_ih_l1_reverse", "bias_ih_l1_reverse"]
    assert m.weight_ih_l1.shape == (14, 14)
    m = rnnkit.Recurrent("minlstm", 5, 7, bias=False)
    assert [n for n, _ in m.named_parameters()] == ["weight_ih_l0"]
    assert m.weight_ih_l0.shape == (21, 5)
    assert "mingru" in rnnkit.cells.cell_names() and "minlstm" in rnnkit.cells.cell_names()


def test_init_options():
    torch.manual_seed(0)
    m = rnnkit.Recurrent("mingru", 2, 64, init="chrono", chrono_tmax=100)
    bz = m.bias_ih_l0[:64]
    assert (bz <= 0).all() and (bz >= -torch.log(torch.tensor(99.0)) - 1e-6).all()
    m = rnnkit.Recurrent("minlstm", 2, 16, init="chrono", chrono_tmax=100)
    torch.testing.assert_close(m.bias_ih_l0[16:32], -m.bias_ih_l0[:16])
    m = rnnkit.Recurrent("minlstm", 2, 16, forget_bias=1.0)
    assert (m.bias_ih_l0[:16] == 1.0).all()
    with pytest.raises(ValueError, match="no weight_hh"):
        rnnkit.Recurrent("mingru", 2, 4, init="orthogonal")
    with pytest.raises(ValueError, match="forget"):
        rnnkit.Recurrent("mingru", 2, 4, forget_bias=1.0)
    with pytest.raises(ValueError, match="activation"):
        make_cell("mingru", 2, 4, activation="tanh")


@pytest.mark.parametrize("option", ["recurrent_dropout", "weight_drop"])
def test_options_on_weight_hh_are_refused(option):
    with pytest.raises(ValueError, match=f"{option} acts on weight_hh"):
        rnnkit.Recurrent("mingru", 2, 4, **{option: 0.2})


@pytest.mark.parametrize("cell", ["mingru", "minlstm"])
def test_step_streaming_equals_forward(cell):
    torch.manual_seed(1)
    m = rnnkit.Recurrent(cell, 3, 6, num_layers=2, batch_first=True, dtype=torch.float64)
    x = torch.randn(2, 9, 3, dtype=torch.float64)
    h0 = torch.randn(2, 2, 6, dtype=torch.float64)
    out, hn = m(x, h0)
    state, ys = h0, []
    for t in range(9):
        y, state = m.step(x[:, t], state)
        ys.append(y)
    torch.testing.assert_close(torch.stack(ys, 1), out)
    torch.testing.assert_close(state, hn)


@pytest.mark.parametrize("cell", ["mingru", "minlstm"])
def test_layer_features_match_the_reference_executor(cell):
    """Stacked, bidirectional, lengths, initial state, dropout, zoneout, per-step states: the layer
    on auto (scan on CPU) equals the reference loop."""
    torch.manual_seed(2)
    kw = dict(num_layers=2, bidirectional=True, dtype=torch.float64, zoneout=0.2)
    auto = rnnkit.Recurrent(cell, 3, 5, **kw).eval()
    ref = rnnkit.Recurrent(cell, 3, 5, backend="reference", **kw).eval()
    ref.load_state_dict(auto.state_dict())
    assert {ex.name for per in auto.plan().executors for ex in per} == {"scan"}
    x = torch.randn(11, 4, 3, dtype=torch.float64)
    h0 = torch.randn(4, 4, 5, dtype=torch.float64)
    lengths = torch.tensor([11, 3, 7, 1])
    a = auto(x, h0, lengths=lengths, return_states=True)
    r = ref(x, h0, lengths=lengths, return_states=True)
    for u, v in zip(a, r, strict=True):
        torch.testing.assert_close(u, v)
