"""Each cell's step against its equations written out independently here, against torch.nn's
cells with copied weights, and the initialisation schemes."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from rnnkit import Recurrent
from rnnkit.cells import InitOptions, make_cell

F64 = torch.float64


def random_params(cell, seed: int = 0, scale: float = 0.5, dtype=F64) -> dict[str, torch.Tensor]:
    """Every parameter random (layer-norm gains and biases too, so their placement matters)."""
    g = torch.Generator().manual_seed(seed)
    return {
        name: torch.randn(shape, generator=g, dtype=dtype) * scale
        for name, shape in cell.param_shapes().items()
    }


def run_step(cell, params, x, state, recurrent_mask=None):
    return cell.step(params, cell.project_input(params, x), state, recurrent_mask)


# ---- independent equations -----------------------------------------------------------------
def ln(v, w, b, eps=1e-5):
    mu = v.mean(-1, keepdim=True)
    var = ((v - mu) ** 2).mean(-1, keepdim=True)
    return (v - mu) / torch.sqrt(var + eps) * w + b


def lstm_equations(p, x, h, c, *, bias, proj, peephole, layer_norm):
    H = c.shape[-1]
    ax = x @ p["weight_ih"].t()
    ah = h @ p["weight_hh"].t()
    if layer_norm:
        ax = ln(ax, p["layer_norm_ih_weight"], p["layer_norm_ih_bias"])
        ah = ln(ah, p["layer_norm_hh_weight"], p["layer_norm_hh_bias"])
    a = ax + ah
    if bias:
        a = a + p["bias_ih"] + p["bias_hh"]
    a_i, a_f, a_g, a_o = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
    if peephole:
        a_i = a_i + p["weight_peephole_i"] * c
        a_f = a_f + p["weight_peephole_f"] * c
    i, f, g = torch.sigmoid(a_i), torch.sigmoid(a_f), torch.tanh(a_g)
    c_new = f * c + i * g
    if peephole:
        a_o = a_o + p["weight_peephole_o"] * c_new
    o = torch.sigmoid(a_o)
    c_show = ln(c_new, p["layer_norm_c_weight"], p["layer_norm_c_bias"]) if layer_norm else c_new
    m = o * torch.tanh(c_show)
    h_new = m @ p["weight_hr"].t() if proj else m
    return h_new, c_new


def gru_equations(p, x, h, *, bias, layer_norm):
    H = h.shape[-1]
    ax = x @ p["weight_ih"].t()
    ah = h @ p["weight_hh"].t()
    if layer_norm:
        ax = ln(ax, p["layer_norm_ih_weight"], p["layer_norm_ih_bias"])
        ah = ln(ah, p["layer_norm_hh_weight"], p["layer_norm_hh_bias"])
    if bias:
        ax = ax + p["bias_ih"]
        ah = ah + p["bias_hh"]
    r = torch.sigmoid(ax[:, :H] + ah[:, :H])
    z = torch.sigmoid(ax[:, H : 2 * H] + ah[:, H : 2 * H])
    n = torch.tanh(ax[:, 2 * H :] + r * ah[:, 2 * H :])  # b_hn inside r * (...)
    return (1 - z) * n + z * h


def elman_equations(p, x, h, *, bias, relu):
    a = x @ p["weight_ih"].t() + h @ p["weight_hh"].t()
    if bias:
        a = a + p["bias_ih"] + p["bias_hh"]
    return torch.relu(a) if relu else torch.tanh(a)


LSTM_OPTIONS = list(itertools.product([True, False], [0, 3], [False, True], [False, True]))


@pytest.mark.parametrize(("bias", "proj", "peephole", "layer_norm"), LSTM_OPTIONS)
def test_lstm_step_matches_equations(bias, proj, peephole, layer_norm):
    I, H, B = 4, 5, 3
    cell = make_cell("lstm", I, H, bias, proj_size=proj, peephole=peephole, layer_norm=layer_norm)
    p = random_params(cell, seed=1)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(B, I, generator=g, dtype=F64)
    h = torch.randn(B, proj or H, generator=g, dtype=F64)
    c = torch.randn(B, H, generator=g, dtype=F64) * 2
    h_new, c_new = run_step(cell, p, x, (h, c))
    h_ref, c_ref = lstm_equations(
        p, x, h, c, bias=bias, proj=proj > 0, peephole=peephole, layer_norm=layer_norm
    )
    assert h_new.shape == (B, proj or H)
    assert c_new.shape == (B, H)
    torch.testing.assert_close(c_new, c_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h_new, h_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("bias", "layer_norm"), list(itertools.product([True, False], repeat=2)))
def test_gru_step_matches_equations(bias, layer_norm):
    I, H, B = 4, 5, 3
    cell = make_cell("gru", I, H, bias, layer_norm=layer_norm)
    p = random_params(cell, seed=3)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(B, I, generator=g, dtype=F64)
    h = torch.randn(B, H, generator=g, dtype=F64)
    (h_new,) = run_step(cell, p, x, (h,))
    torch.testing.assert_close(
        h_new, gru_equations(p, x, h, bias=bias, layer_norm=layer_norm), rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("name", ["rnn_tanh", "rnn_relu"])
def test_elman_step_matches_equations(name, bias):
    I, H, B = 4, 5, 3
    cell = make_cell(name, I, H, bias)
    p = random_params(cell, seed=5)
    g = torch.Generator().manual_seed(6)
    x = torch.randn(B, I, generator=g, dtype=F64)
    h = torch.randn(B, H, generator=g, dtype=F64)
    (h_new,) = run_step(cell, p, x, (h,))
    expected = elman_equations(p, x, h, bias=bias, relu=name == "rnn_relu")
    torch.testing.assert_close(h_new, expected, rtol=1e-12, atol=1e-12)
    if name == "rnn_relu":
        assert (h_new == 0).any() and (h_new > 0).any()


def test_modrelu_step_matches_equations():
    """h = sign(z) max(|z| + b, 0), written out per case: z + b for z > 0, z - b for z < 0, and 0
    where |z| + b <= 0 (thresholds drawn wide enough that all three cases occur)."""
    I, H, B = 4, 6, 5
    cell = make_cell("rnn_modrelu", I, H)
    p = random_params(cell, seed=7)
    p["modrelu_bias"] = torch.linspace(-1.5, 0.5, H, dtype=F64)
    g = torch.Generator().manual_seed(8)
    x = torch.randn(B, I, generator=g, dtype=F64)
    h = torch.randn(B, H, generator=g, dtype=F64)
    (h_new,) = run_step(cell, p, x, (h,))
    z = x @ p["weight_ih"].T + p["bias_ih"] + h @ p["weight_hh"].T + p["bias_hh"]
    b = p["modrelu_bias"]
    expected = torch.where(z.abs() + b <= 0, torch.zeros_like(z), torch.where(z > 0, z + b, z - b))
    torch.testing.assert_close(h_new, expected, rtol=1e-12, atol=1e-12)
    assert (h_new == 0).any() and (h_new > 0).any() and (h_new < 0).any()


def test_gru_reset_gate_multiplies_b_hn():
    """With W_hh = 0 and the reset gate driven to zero, b_hn must vanish (it sits inside r*(.))."""
    I, H = 2, 3
    cell = make_cell("gru", I, H)
    p = {k: torch.zeros(s, dtype=F64) for k, s in cell.param_shapes().items()}
    p["bias_ih"][:H] = -1e3  # r = 0
    p["bias_hh"][2 * H :] = 5.0  # b_hn
    p["bias_ih"][H : 2 * H] = -1e3  # z = 0: h' = n
    x = torch.zeros(1, I, dtype=F64)
    (h,) = run_step(cell, p, x, (torch.zeros(1, H, dtype=F64),))
    torch.testing.assert_close(h, torch.zeros(1, H, dtype=F64))
    p["bias_ih"][:H] = 1e3  # r = 1: n = tanh(b_hn)
    (h,) = run_step(cell, p, x, (torch.zeros(1, H, dtype=F64),))
    torch.testing.assert_close(h, torch.full((1, H), math.tanh(5.0), dtype=F64))


def test_lstm_gate_order_is_i_f_g_o():
    """Drive one gate block at a time and watch its effect on (h, c)."""
    I, H = 2, 3
    cell = make_cell("lstm", I, H)
    p = {k: torch.zeros(s, dtype=F64) for k, s in cell.param_shapes().items()}
    big = 30.0
    # i = 1, f = 0, g = tanh(1), o = 1  -> c = tanh(1), h = tanh(tanh(1))
    p["bias_ih"][:H] = big
    p["bias_ih"][H : 2 * H] = -big
    p["bias_ih"][2 * H : 3 * H] = 1.0
    p["bias_ih"][3 * H :] = big
    x = torch.zeros(1, I, dtype=F64)
    c0 = torch.full((1, H), 7.0, dtype=F64)
    h, c = run_step(cell, p, x, (torch.zeros(1, H, dtype=F64), c0))
    torch.testing.assert_close(c, torch.full((1, H), math.tanh(1.0), dtype=F64))
    torch.testing.assert_close(h, torch.full((1, H), math.tanh(math.tanh(1.0)), dtype=F64))
    # f = 1, i = 0: c carried over; o = 0: h = 0
    p["bias_ih"][:H] = -big
    p["bias_ih"][H : 2 * H] = big
    p["bias_ih"][3 * H :] = -big
    h, c = run_step(cell, p, x, (torch.zeros(1, H, dtype=F64), c0))
    torch.testing.assert_close(c, c0)
    torch.testing.assert_close(h, torch.zeros(1, H, dtype=F64), atol=1e-12, rtol=0)


def test_lstm_peephole_terms():
    """p_i and p_f see c_{t-1}; p_o sees c_t."""
    I, H = 2, 3
    cell = make_cell("lstm", I, H, peephole=True)
    p = {k: torch.zeros(s, dtype=F64) for k, s in cell.param_shapes().items()}
    c0 = torch.tensor([[1.0, -2.0, 0.5]], dtype=F64)
    p["bias_ih"][2 * H : 3 * H] = 0.3  # g = tanh(0.3)
    p["weight_peephole_i"] = torch.tensor([0.7, -0.4, 1.1], dtype=F64)
    p["weight_peephole_f"] = torch.tensor([-0.2, 0.9, 0.3], dtype=F64)
    p["weight_peephole_o"] = torch.tensor([1.5, 0.6, -0.8], dtype=F64)
    h, c = run_step(cell, p, torch.zeros(1, I, dtype=F64), (torch.zeros(1, H, dtype=F64), c0))
    i = torch.sigmoid(p["weight_peephole_i"] * c0)
    f = torch.sigmoid(p["weight_peephole_f"] * c0)
    c_ref = f * c0 + i * math.tanh(0.3)
    o = torch.sigmoid(p["weight_peephole_o"] * c_ref)
    torch.testing.assert_close(c, c_ref)
    torch.testing.assert_close(h, o * torch.tanh(c_ref))


def test_lstm_layer_norm_leaves_c_unnormalised_and_normalises_before_tanh():
    I, H = 3, 4
    cell = make_cell("lstm", I, H, layer_norm=True)
    p = random_params(cell, seed=9)
    p["layer_norm_c_weight"] = torch.ones(H, dtype=F64)
    p["layer_norm_c_bias"] = torch.zeros(H, dtype=F64)
    g = torch.Generator().manual_seed(10)
    x = torch.randn(2, I, generator=g, dtype=F64)
    h0 = torch.randn(2, H, generator=g, dtype=F64)
    c0 = torch.randn(2, H, generator=g, dtype=F64) * 3 + 2
    h, c = run_step(cell, p, x, (h0, c0))
    # c is not normalised: its mean is not zero
    assert c.mean(-1).abs().min() > 1e-3
    # the output gate times tanh of the normalised c
    o = h / torch.tanh(ln(c, 1.0, 0.0))
    assert ((o > 0) & (o < 1)).all()
    # scaling the input projection's weight leaves the layer-normed gates unchanged (LN before b_ih)
    p2 = dict(p)
    p2["weight_ih"] = p["weight_ih"] * 10
    p2["weight_hh"] = p["weight_hh"] * 10
    h2, c2 = run_step(cell, p2, x, (h0, c0))
    torch.testing.assert_close(h2, h, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(c2, c, rtol=1e-4, atol=1e-6)


def test_lstm_projection_is_w_hr_times_o_tanh_c():
    I, H, P = 3, 5, 2
    cell = make_cell("lstm", I, H, proj_size=P)
    plain = make_cell("lstm", I, H)
    p = random_params(cell, seed=11)
    g = torch.Generator().manual_seed(12)
    x = torch.randn(2, I, generator=g, dtype=F64)
    h0 = torch.randn(2, P, generator=g, dtype=F64)
    c0 = torch.randn(2, H, generator=g, dtype=F64)
    h, c = run_step(cell, p, x, (h0, c0))
    # the same cell without projection, with h0 seen through W_hh (4H, P) == W_hh' (4H, H) on padded h
    pp = {k: v for k, v in p.items() if k != "weight_hr"}
    pp["weight_hh"] = torch.cat([p["weight_hh"], torch.zeros(4 * H, H - P, dtype=F64)], dim=1)
    h_full, c_full = run_step(plain, pp, x, (torch.cat([h0, torch.zeros(2, H - P, dtype=F64)], 1), c0))
    torch.testing.assert_close(c, c_full)
    torch.testing.assert_close(h, h_full @ p["weight_hr"].t())


# ---- parity with torch.nn ------------------------------------------------------------------
def copy_cell_params(cell, torch_cell, dtype=F64):
    return {
        n: getattr(torch_cell, n).detach().to(dtype).clone() for n in cell.param_shapes()
    }


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("name", ["lstm", "gru", "rnn_tanh", "rnn_relu"])
def test_plain_cells_match_torch_nn_cells(name, bias):
    torch.manual_seed(0)
    I, H, B = 4, 6, 5
    if name == "lstm":
        ref = torch.nn.LSTMCell(I, H, bias=bias, dtype=F64)
    elif name == "gru":
        ref = torch.nn.GRUCell(I, H, bias=bias, dtype=F64)
    else:
        ref = torch.nn.RNNCell(I, H, bias=bias, nonlinearity=name[4:], dtype=F64)
    cell = make_cell(name, I, H, bias)
    p = copy_cell_params(cell, ref)
    x = torch.randn(B, I, dtype=F64)
    h = torch.randn(B, H, dtype=F64)
    if name == "lstm":
        c = torch.randn(B, H, dtype=F64)
        h_ref, c_ref = ref(x, (h, c))
        h_new, c_new = run_step(cell, p, x, (h, c))
        torch.testing.assert_close(c_new, c_ref)
    else:
        h_ref = ref(x, h)
        (h_new,) = run_step(cell, p, x, (h,))
    torch.testing.assert_close(h_new, h_ref)


def test_projected_lstm_step_matches_torch_nn_lstm():
    torch.manual_seed(0)
    I, H, P, B = 4, 6, 3, 5
    ref = torch.nn.LSTM(I, H, proj_size=P, dtype=F64)
    cell = make_cell("lstm", I, H, proj_size=P)
    p = {n: getattr(ref, n + "_l0").detach().clone() for n in cell.param_shapes()}
    x = torch.randn(B, I, dtype=F64)
    h = torch.randn(B, P, dtype=F64)
    c = torch.randn(B, H, dtype=F64)
    _, (h_ref, c_ref) = ref(x.unsqueeze(0), (h.unsqueeze(0), c.unsqueeze(0)))
    h_new, c_new = run_step(cell, p, x, (h, c))
    torch.testing.assert_close(h_new, h_ref[0])
    torch.testing.assert_close(c_new, c_ref[0])


# ---- initialisation ------------------------------------------------------------------------
def init_params(cell, init: InitOptions, dtype=F64):
    params = {n: torch.full(s, float("nan"), dtype=dtype) for n, s in cell.param_shapes().items()}
    cell.reset_parameters(params, init)
    return params


CELL_CONFIGS = [
    ("rnn_tanh", {}),
    ("rnn_relu", {}),
    ("lstm", {}),
    ("lstm", {"proj_size": 8}),
    ("lstm", {"peephole": True, "layer_norm": True}),
    ("gru", {}),
    ("gru", {"layer_norm": True}),
]


@pytest.mark.parametrize(("name", "options"), CELL_CONFIGS)
def test_torch_init_is_uniform_within_one_over_sqrt_h(name, options):
    torch.manual_seed(0)
    H = 32
    cell = make_cell(name, 16, H, **options)
    params = init_params(cell, InitOptions("torch"))
    bound = 1 / math.sqrt(H)
    for n, p in params.items():
        assert not p.isnan().any(), n
        if n.startswith("layer_norm_"):
            expected = 1.0 if n.endswith("_weight") else 0.0
            assert (p == expected).all(), n
            continue
        assert p.abs().max() <= bound, n
        # spread over the whole interval, not clustered
        assert p.max() > 0.7 * bound and p.min() < -0.7 * bound, n
        if p.numel() >= 1000:
            assert abs(p.mean().item()) < 0.1 * bound, n
            assert abs(p.var().item() - bound**2 / 3) < 0.15 * bound**2 / 3, n


def test_recurrent_module_init_matches_torch_nn_bounds():
    torch.manual_seed(0)
    H = 20
    m = Recurrent("lstm", 7, H, num_layers=2, bidirectional=True, proj_size=5)
    bound = 1 / math.sqrt(H)
    for n, p in m.named_parameters():
        assert p.abs().max() <= bound, n
        assert p.abs().max() > 0.5 * bound, n


@pytest.mark.parametrize(("name", "options"), CELL_CONFIGS)
def test_orthogonal_init(name, options):
    torch.manual_seed(0)
    H, I = 12, 7
    cell = make_cell(name, I, H, **options)
    params = init_params(cell, InitOptions("orthogonal"))
    w = params["weight_hh"]
    P = cell.output_size
    blocks = w.view(cell.num_gates, H, P)
    for block in blocks:
        if P == H:
            torch.testing.assert_close(block @ block.t(), torch.eye(H, dtype=F64))
        else:  # (H, P) with P < H: orthonormal columns
            torch.testing.assert_close(block.t() @ block, torch.eye(P, dtype=F64))
    # the blocks are not all the same matrix
    assert not torch.allclose(blocks[0], blocks[-1]) or cell.num_gates == 1
    for b in ("bias_ih", "bias_hh"):
        assert (params[b] == 0).all()
    bound = 1 / math.sqrt(H)
    assert params["weight_ih"].abs().max() <= bound


def test_orthogonal_init_in_every_layer_and_direction():
    torch.manual_seed(0)
    H = 6
    m = Recurrent("gru", 3, H, num_layers=2, bidirectional=True, init="orthogonal")
    for layer in range(2):
        for d in range(2):
            p = m.layer_params(layer, d)
            for block in p["weight_hh"].detach().view(3, H, H):
                torch.testing.assert_close(block @ block.t(), torch.eye(H), atol=1e-5, rtol=0)
            assert (p["bias_ih"] == 0).all() and (p["bias_hh"] == 0).all()


def test_chrono_init_lstm():
    torch.manual_seed(0)
    H, tmax = 512, 50.0
    cell = make_cell("lstm", 4, H)
    params = init_params(cell, InitOptions("chrono", chrono_tmax=tmax))
    b_f = params["bias_ih"][H : 2 * H]
    b_i = params["bias_ih"][:H]
    assert (b_f >= 0).all() and (b_f <= math.log(tmax - 1) + 1e-12).all()
    torch.testing.assert_close(b_i, -b_f)
    assert (params["bias_hh"][: 2 * H] == 0).all()
    u = b_f.exp()  # ~ U[1, tmax - 1]
    assert abs(u.mean().item() - tmax / 2) < 3.0
    assert u.min() < 5 and u.max() > tmax - 5
    # other gates keep torch's init
    bound = 1 / math.sqrt(H)
    rest = torch.cat([params["bias_ih"][2 * H :], params["bias_hh"][2 * H :]])
    assert rest.abs().max() <= bound and rest.abs().max() > 0.5 * bound


def test_chrono_init_default_tmax_is_1000():
    torch.manual_seed(0)
    H = 512
    m = Recurrent("lstm", 3, H, init="chrono")
    b_f = m.bias_ih_l0.detach()[H : 2 * H]
    assert b_f.max() <= math.log(999) + 1e-5
    assert b_f.max() > math.log(800)  # reaches far beyond a small T_max


def test_chrono_init_gru():
    torch.manual_seed(0)
    H, tmax = 512, 30.0
    cell = make_cell("gru", 4, H)
    params = init_params(cell, InitOptions("chrono", chrono_tmax=tmax))
    b_z = params["bias_ih"][H : 2 * H]
    assert (b_z >= 0).all() and (b_z <= math.log(tmax - 1) + 1e-12).all()
    assert abs(b_z.exp().mean().item() - tmax / 2) < 2.0
    assert (params["bias_hh"][H : 2 * H] == 0).all()


def test_chrono_init_in_recurrent_every_layer_and_direction():
    torch.manual_seed(0)
    H, tmax = 64, 20.0
    m = Recurrent("lstm", 3, H, num_layers=2, bidirectional=True, init="chrono", chrono_tmax=tmax)
    for layer in range(2):
        for d in range(2):
            p = m.layer_params(layer, d)
            b_f = p["bias_ih"].detach()[H : 2 * H]
            assert (b_f >= 0).all() and (b_f <= math.log(tmax - 1) + 1e-5).all()
            torch.testing.assert_close(p["bias_ih"].detach()[:H], -b_f)
            assert (p["bias_hh"].detach()[: 2 * H] == 0).all()


@pytest.mark.parametrize("value", [1.0, -0.5, 3.0])
def test_forget_bias_sets_total_forget_bias(value):
    torch.manual_seed(0)
    H = 8
    m = Recurrent("lstm", 3, H, num_layers=2, bidirectional=True, forget_bias=value)
    for layer in range(2):
        for d in range(2):
            p = m.layer_params(layer, d)
            total = p["bias_ih"].detach()[H : 2 * H] + p["bias_hh"].detach()[H : 2 * H]
            torch.testing.assert_close(total, torch.full((H,), value))
            # other gates untouched (still torch's U(+-1/sqrt(H)), not constant)
            assert p["bias_ih"].detach()[:H].std() > 0


def test_forget_bias_combined_with_orthogonal():
    H = 5
    m = Recurrent("lstm", 3, H, init="orthogonal", forget_bias=1.0)
    b = m.bias_ih_l0.detach() + m.bias_hh_l0.detach()
    torch.testing.assert_close(b[H : 2 * H], torch.ones(H))
    assert (b[:H] == 0).all() and (b[2 * H :] == 0).all()


@pytest.mark.parametrize("name", ["rnn_tanh", "rnn_relu"])
def test_chrono_on_elman_is_an_error(name):
    with pytest.raises(ValueError, match="chrono"):
        Recurrent(name, 3, 4, init="chrono")


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_chrono_without_bias_is_an_error(name):
    with pytest.raises(ValueError, match="bias"):
        Recurrent(name, 3, 4, bias=False, init="chrono")


def test_forget_bias_errors():
    with pytest.raises(ValueError, match="bias"):
        Recurrent("lstm", 3, 4, bias=False, forget_bias=1.0)
    with pytest.raises(ValueError, match="forget"):
        Recurrent("gru", 3, 4, forget_bias=1.0)
    with pytest.raises(ValueError, match="forget"):
        Recurrent("rnn_tanh", 3, 4, forget_bias=1.0)


def test_init_option_errors():
    with pytest.raises(ValueError, match="init must be one of"):
        Recurrent("lstm", 3, 4, init="xavier")
    with pytest.raises(ValueError, match="chrono_tmax"):
        Recurrent("lstm", 3, 4, init="chrono", chrono_tmax=2.0)
