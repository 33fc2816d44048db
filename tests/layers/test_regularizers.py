"""The regularisers (dropout, variational and recurrent dropout, zoneout, weight drop), ``step()``
streaming, per-step states and the option errors of ``Recurrent``."""

from __future__ import annotations

import pytest
import torch

import rnnkit.layers.recurrent as recurrent_module
from rnnkit import Recurrent
from rnnkit.cells import cell_names, make_cell
from rnnkit.cells.registry import spec_class
from rnnkit.errors import BackendUnavailable
from rnnkit.executors import StepMasks
from rnnkit.executors.native import torch_mode
from rnnkit.executors.reference import ReferenceExecutor
from rnnkit.layers.regularizers import dropout_mask, zoneout_weights

F64 = torch.float64


def as_tuple(s):
    return s if isinstance(s, tuple) else (s,)


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


class MaskRecorder:
    """Wraps ``dropout_mask`` as the layer sees it; records every mask, or substitutes fixed ones."""

    def __init__(self, fixed: dict[tuple[int, ...], torch.Tensor] | None = None):
        self.calls: list[tuple[tuple[int, ...], float, torch.Tensor]] = []
        self.fixed = fixed or {}

    def __call__(self, shape, p, like):
        shape = tuple(shape)
        mask = self.fixed[shape].to(like) if shape in self.fixed else dropout_mask(shape, p, like)
        self.calls.append((shape, p, mask))
        return mask


REGULARISERS = {
    "dropout": {"dropout": 0.5},
    "variational_dropout": {"variational_dropout": 0.5},
    "recurrent_dropout": {"recurrent_dropout": 0.5},
    "zoneout": {"zoneout": 0.5},
    "weight_drop": {"weight_drop": 0.5},
}
# every rnnkit family with a recurrent weight (the regularisers act on weight_hh / h_{t-1}); toy cells
# that other test files register need not honour the recurrent-dropout mask
CELLS = [name for name in cell_names() if spec_class(name).__module__.startswith("rnnkit.")
         and "weight_hh" in make_cell(name, 3, 5).param_shapes()]


def build(cell, *, seed=0, backend="auto", **kwargs):
    torch.manual_seed(seed)
    kwargs.setdefault("num_layers", 2)
    return Recurrent(cell, 3, 5, backend=backend, dtype=F64, **kwargs)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("reg", list(REGULARISERS))
def test_eval_is_deterministic_and_training_is_not(reg, cell):
    m = build(cell, bidirectional=True, **REGULARISERS[reg])
    plain = build(cell, bidirectional=True)
    plain.load_state_dict(m.state_dict())
    x = randn(8, 4, 3)
    m.eval()
    out1, s1 = m(x)
    out2, s2 = m(x)
    assert torch.equal(out1, out2)
    for a, b in zip(as_tuple(s1), as_tuple(s2), strict=True):
        assert torch.equal(a, b)
    plain_out, _ = plain.eval()(x)
    if reg == "zoneout":  # evaluation uses the expectation, which changes the result
        assert not torch.allclose(out1, plain_out)
    else:  # dropout of every kind is the identity at evaluation
        torch.testing.assert_close(out1, plain_out)
    m.train()
    torch.manual_seed(1)
    train1, _ = m(x)
    torch.manual_seed(2)
    train2, _ = m(x)
    assert not torch.allclose(train1, out1)
    assert not torch.allclose(train1, train2)
    torch.manual_seed(1)
    again, _ = m(x)
    torch.testing.assert_close(again, train1, rtol=0, atol=0)


# ---- variational dropout -------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_variational_dropout_mask_is_constant_over_time(backend):
    """With W_ih = I and W_hh = 0, h_t = tanh(m * x_t): the zeros of the output are the mask."""
    F, B, T, p = 32, 8, 6, 0.5
    torch.manual_seed(0)
    m = Recurrent("rnn_tanh", F, F, variational_dropout=p, backend=backend, dtype=F64)
    with torch.no_grad():
        m.weight_ih_l0.copy_(torch.eye(F))
        m.weight_hh_l0.zero_()
        m.bias_ih_l0.zero_()
        m.bias_hh_l0.zero_()
    x = torch.full((T, B, F), 0.5, dtype=F64)
    out, _ = m.train()(x)
    dropped = out == 0
    assert (dropped == dropped[0]).all()  # same mask at every step
    kept = out[~dropped]
    torch.testing.assert_close(kept, torch.full_like(kept, torch.tanh(torch.tensor(1.0)).item()))
    frac = dropped[0].double().mean().item()
    assert abs(frac - p) < 0.12
    assert not (dropped[0] == dropped[0][0]).all()  # a different mask per sequence


def test_variational_dropout_masks_shapes_per_layer(monkeypatch):
    rec = MaskRecorder()
    monkeypatch.setattr(recurrent_module, "dropout_mask", rec)
    m = build("lstm", num_layers=3, bidirectional=True, proj_size=2, variational_dropout=0.3).train()
    m(randn(7, 4, 3))
    assert [c[0] for c in rec.calls] == [(1, 4, 3), (1, 4, 4), (1, 4, 4)]
    assert all(c[1] == 0.3 for c in rec.calls)
    rec.calls.clear()
    m.eval()(randn(7, 4, 3))
    assert rec.calls == []


def test_variational_dropout_applies_the_recorded_mask(monkeypatch):
    """The layer's input is multiplied by the (1, B, F) mask: compare with masking x by hand."""
    fixed = {(1, 4, 3): torch.tensor([[[2.0, 0, 2.0], [0, 0, 2.0], [2.0, 2.0, 2.0], [0, 2.0, 0]]])}
    monkeypatch.setattr(recurrent_module, "dropout_mask", MaskRecorder(fixed))
    m = build("gru", num_layers=1, variational_dropout=0.5)
    x = randn(6, 4, 3)
    out, h = m.train()(x)
    ref_out, ref_h = m.eval()(x * fixed[(1, 4, 3)].to(F64))
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(h, ref_h)


def test_dropout_mask_scaling():
    like = torch.empty(0, dtype=F64)
    torch.manual_seed(0)
    mask = dropout_mask((200, 200), 0.3, like)
    values = mask.unique()
    assert values.numel() == 2 and values[0] == 0
    assert values[1].item() == pytest.approx(1 / 0.7, rel=1e-12)
    assert abs((mask == 0).double().mean().item() - 0.3) < 0.01
    assert abs(mask.mean().item() - 1.0) < 0.02
    assert (dropout_mask((3, 4), 1.0, like) == 0).all()
    assert (dropout_mask((3, 4), 0.0, like) == 1).all()


# ---- recurrent dropout ---------------------------------------------------------------------
def hand_loop(cell, p, x, mask):
    """h_{t-1} * mask only where it meets W_hh; the LSTM's c and the GRU's interpolation untouched."""
    T, B, _ = x.shape
    Hh = p["weight_hh"].shape[1]
    H = p["weight_hh"].shape[0] // {"lstm": 4, "gru": 3, "rnn_tanh": 1}[cell]
    h = torch.zeros(B, Hh, dtype=F64)
    c = torch.zeros(B, H, dtype=F64)
    outs = []
    for t in range(T):
        gx = x[t] @ p["weight_ih"].t() + p["bias_ih"]
        gh = (h * mask) @ p["weight_hh"].t() + p["bias_hh"]
        if cell == "lstm":
            i, f, g, o = (gx + gh).chunk(4, -1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            if "weight_hr" in p:
                h = h @ p["weight_hr"].t()
        elif cell == "gru":
            r = torch.sigmoid(gx[:, :H] + gh[:, :H])
            z = torch.sigmoid(gx[:, H : 2 * H] + gh[:, H : 2 * H])
            n = torch.tanh(gx[:, 2 * H :] + r * gh[:, 2 * H :])
            h = (1 - z) * n + z * h
        else:
            h = torch.tanh(gx + gh)
        outs.append(h)
    return torch.stack(outs), h, c


@pytest.mark.parametrize(("cell", "opts"), [("lstm", {}), ("lstm", {"proj_size": 2}), ("gru", {}),
                                            ("rnn_tanh", {})])
def test_recurrent_dropout_against_hand_loop(cell, opts, monkeypatch):
    T, B = 6, 3
    m = build(cell, num_layers=1, recurrent_dropout=0.5, **opts)
    n = m.cell.output_size
    g = torch.Generator().manual_seed(3)
    mask = torch.bernoulli(torch.full((B, n), 0.5, dtype=F64), generator=g) * 2.0
    assert (mask == 0).any() and (mask != 0).any()
    rec = MaskRecorder({(B, n): mask})
    monkeypatch.setattr(recurrent_module, "dropout_mask", rec)
    x = randn(T, B, 3)
    out, final = m.train()(x)
    assert [c[0] for c in rec.calls] == [(B, n)]
    p = {k: v.detach() for k, v in m.layer_params(0).items()}
    ref_out, ref_h, ref_c = hand_loop(cell, p, x, mask)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(as_tuple(final)[0][0], ref_h)
    if cell == "lstm":
        torch.testing.assert_close(final[1][0], ref_c)
    # the mask matters: without it the result differs
    no_mask, _, _ = hand_loop(cell, p, x, torch.ones_like(mask))
    assert not torch.allclose(no_mask, out)
    # and the executor given the same mask directly agrees
    res = ReferenceExecutor().run(
        m.cell, p, x, m.cell.initial_state(B, dtype=F64), masks=StepMasks(recurrent=mask)
    )
    torch.testing.assert_close(res.outputs, ref_out)


def test_recurrent_dropout_one_mask_per_layer_and_direction(monkeypatch):
    rec = MaskRecorder()
    monkeypatch.setattr(recurrent_module, "dropout_mask", rec)
    m = build("lstm", num_layers=2, bidirectional=True, proj_size=3, recurrent_dropout=0.25).train()
    m(randn(5, 4, 3))
    assert [c[0] for c in rec.calls] == [(4, 3)] * 4
    rec.calls.clear()
    m.eval()(randn(5, 4, 3))
    assert rec.calls == []


# ---- zoneout ---------------------------------------------------------------------------------
def test_zoneout_weights_training_are_bernoulli_per_step():
    torch.manual_seed(0)
    like = torch.empty(0, dtype=F64)
    p, T, Bsz, n = 0.3, 50, 16, 32
    w = zoneout_weights(p, T, Bsz, n, like, training=True)
    assert w.shape == (T, Bsz, n)
    assert set(w.unique().tolist()) <= {0.0, 1.0}
    assert abs(w.mean().item() - p) < 0.02
    # a fresh draw at every step
    per_step_equal = [(w[t] == w[t + 1]).all().item() for t in range(T - 1)]
    assert not any(per_step_equal)
    assert abs(w.mean(dim=(1, 2)).std().item() - (p * (1 - p) / (Bsz * n)) ** 0.5) < 0.02
    ev = zoneout_weights(p, T, Bsz, n, like, training=False)
    assert ev.numel() == 1 and ev.item() == pytest.approx(p)
    assert zoneout_weights(0.0, T, Bsz, n, like, training=True) is None


@pytest.mark.parametrize("cell", CELLS)
def test_zoneout_training_keeps_each_unit_or_updates_it(cell):
    """In training every state unit either keeps its previous value or takes the fresh one, each
    step independently, with probability p of keeping."""
    T, Bsz, Hsz = 30, 8, 12
    zo = (0.3, 0.6) if cell == "lstm" else 0.4
    torch.manual_seed(0)
    m = Recurrent(cell, 3, Hsz, zoneout=zo, backend="reference", dtype=F64).train()
    x = randn(T, Bsz, 3)
    _, final, states = m(x, return_states=True)
    spec = m.cell
    p = {k: v.detach() for k, v in m.layer_params(0).items()}
    ps = zo if isinstance(zo, tuple) else (zo,)
    prev = spec.initial_state(Bsz, dtype=F64)
    keep_fracs = [[] for _ in ps]
    keeps = [[] for _ in ps]
    with torch.no_grad():
        for t in range(T):
            fresh = spec.step(p, spec.project_input(p, x[t]), prev)
            now = tuple(s[0, t] for s in states)
            for k, (old, new, got) in enumerate(zip(prev, fresh, now, strict=True)):
                is_old = torch.isclose(got, old, rtol=0, atol=1e-12)
                is_new = torch.isclose(got, new, rtol=0, atol=1e-12)
                assert (is_old | is_new).all(), f"step {t} component {k}"
                keep = is_old & ~is_new
                distinct = ~(is_old & is_new)  # a relu unit at 0 both ways tells nothing
                keep_fracs[k].append((keep.sum() / distinct.sum().clamp(min=1)).item())
                keeps[k].append(keep)
            prev = now
    for k, pk in enumerate(ps):
        frac = sum(keep_fracs[k]) / T
        assert abs(frac - pk) < 0.05, (k, frac, pk)
        assert not all(torch.equal(keeps[k][t], keeps[k][t + 1]) for t in range(1, T - 1))
    for f, s in zip(as_tuple(final), states, strict=True):
        torch.testing.assert_close(f[0], s[0, -1])


@pytest.mark.parametrize("backend", ["auto", "reference"])
@pytest.mark.parametrize("cell", CELLS)
def test_zoneout_eval_is_its_expectation(cell, backend):
    T, Bsz = 7, 3
    zo = (0.3, 0.6) if cell == "lstm" else (0.4,)
    torch.manual_seed(0)
    m = Recurrent(cell, 3, 4, num_layers=2, zoneout=zo, backend=backend, dtype=F64).eval()
    x = randn(T, Bsz, 3)
    out, final = m(x)
    inp = x
    finals = []
    for layer, spec in enumerate(m.cells):
        p = {k: v.detach() for k, v in m.layer_params(layer).items()}
        s = spec.initial_state(Bsz, dtype=F64)
        outs = []
        for t in range(T):
            fresh = spec.step(p, spec.project_input(p, inp[t]), s)
            s = tuple(pk * old + (1 - pk) * new for pk, old, new in zip(zo, s, fresh, strict=True))
            outs.append(s[0])
        finals.append(s)
        inp = torch.stack(outs)
    torch.testing.assert_close(out, inp)
    for k, f in enumerate(as_tuple(final)):
        torch.testing.assert_close(f, torch.stack([fs[k] for fs in finals]))


# ---- weight drop -----------------------------------------------------------------------------
def test_weight_drop_mask_statistics(monkeypatch):
    rec = MaskRecorder()
    monkeypatch.setattr(recurrent_module, "dropout_mask", rec)
    torch.manual_seed(0)
    p = 0.4
    m = Recurrent("lstm", 3, 64, num_layers=2, bidirectional=True, weight_drop=p).train()
    before = {n: t.detach().clone() for n, t in m.named_parameters()}
    m(torch.randn(5, 2, 3))
    shapes = [c[0] for c in rec.calls]
    assert shapes == [(256, 64)] * 4  # one per layer and direction, per forward
    for _, _, mask in rec.calls:
        zero = (mask == 0).double().mean().item()
        assert abs(zero - p) < 0.02
        nonzero = mask[mask != 0]
        torch.testing.assert_close(nonzero, torch.full_like(nonzero, 1 / (1 - p)))
        assert abs(mask.mean().item() - 1.0) < 0.03
    masks = [c[2] for c in rec.calls]
    assert not torch.equal(masks[0], masks[1])
    for n, t in m.named_parameters():  # the parameters themselves are untouched
        assert torch.equal(t.detach(), before[n]), n


@pytest.mark.parametrize("backend", ["native", "reference"])
@pytest.mark.parametrize("cell", CELLS)
def test_weight_drop_uses_the_masked_weight(cell, backend, monkeypatch):
    if backend == "native" and torch_mode(make_cell(cell, 3, 5)) is None:
        pytest.skip(f"torch has no kernel for {cell}")
    m = build(cell, num_layers=1, weight_drop=0.5, backend=backend)
    G = m.weight_hh_l0.shape
    mask = torch.bernoulli(torch.full(G, 0.5, dtype=F64), generator=torch.Generator().manual_seed(1)) * 2
    monkeypatch.setattr(recurrent_module, "dropout_mask", MaskRecorder({tuple(G): mask}))
    x = randn(6, 3, 3)
    out, _ = m.train()(x)
    out.sum().backward()
    ref = build(cell, num_layers=1, backend=backend)
    ref.load_state_dict(m.state_dict())
    with torch.no_grad():
        ref.weight_hh_l0.mul_(mask)
    ref_out, _ = ref.eval()(x)
    torch.testing.assert_close(out, ref_out)
    # gradient reaches the raw weight through the mask: zero where dropped
    assert (m.weight_hh_l0.grad[mask == 0] == 0).all()
    assert (m.weight_hh_l0.grad[mask != 0] != 0).any()


def test_weight_drop_one_drops_all_recurrent_weights():
    m = build("gru", num_layers=1, weight_drop=1.0)
    ref = build("gru", num_layers=1)
    ref.load_state_dict(m.state_dict())
    with torch.no_grad():
        ref.weight_hh_l0.zero_()
    x = randn(5, 2, 3)
    torch.testing.assert_close(m.train()(x)[0], ref.eval()(x)[0])


# ---- dropout between layers ------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_dropout_between_layers_only(backend):
    """One layer: torch.nn's dropout has nothing to act on, training equals evaluation."""
    with pytest.warns(UserWarning, match="num_layers greater than 1"):
        m = build("lstm", num_layers=1, dropout=0.5, backend=backend)
    x = randn(5, 2, 3)
    torch.testing.assert_close(m.train()(x)[0], m.eval()(x)[0])


# ---- step() ----------------------------------------------------------------------------------
STEP_CASES = [
    pytest.param("lstm", {"proj_size": 2}, 1, id="lstm-proj-L1"),
    pytest.param("lstm", {"proj_size": 2}, 3, id="lstm-proj-L3"),
    pytest.param("gru", {"layer_norm": True}, 1, id="gru-ln-L1"),
    pytest.param("gru", {"layer_norm": True}, 3, id="gru-ln-L3"),
    pytest.param("lstm", {"zoneout": (0.3, 0.5)}, 3, id="lstm-zoneout-L3"),
    pytest.param("gru", {"zoneout": 0.4}, 1, id="gru-zoneout-L1"),
    pytest.param("rnn_tanh", {"residual": True}, 3, id="rnn-residual-L3"),
    pytest.param("lstm", {"residual": True, "peephole": True, "layer_norm": True}, 3,
                 id="lstm-residual-peephole-ln-L3"),
    pytest.param("lstm", {"residual": True, "peephole": True}, 3, id="lstm-residual-peephole-L3"),
    pytest.param(
        "lstm",
        {"dropout": 0.5, "variational_dropout": 0.3, "recurrent_dropout": 0.3, "weight_drop": 0.3},
        3, id="lstm-dropouts-eval-L3",
    ),
]


@pytest.mark.parametrize("with_state", [False, True], ids=["zero-state", "given-state"])
@pytest.mark.parametrize(("cell", "opts", "layers"), STEP_CASES)
def test_step_equals_forward(cell, opts, layers, with_state):
    torch.manual_seed(0)
    H = 4
    I = 2 * H if opts.get("residual") else 3
    m = Recurrent(cell, I, H, layers, dtype=F64, **opts).eval()
    T, Bsz = 6, 3
    x = randn(T, Bsz, I)
    state = None
    if with_state:
        state = tuple(randn(layers, Bsz, n, seed=5 + k) for k, n in enumerate(m.cell.state_sizes()))
        state = state if len(state) > 1 else state[0]
    out, final = m(x, state)
    s = state
    for t in range(T):
        y, s = m.step(x[t], s)
        torch.testing.assert_close(y, out[t])
    for a, b in zip(as_tuple(s), as_tuple(final), strict=True):
        torch.testing.assert_close(a, b)
    # unbatched x_t streams the same as a batch of one
    s1 = None if state is None else tuple(c[:, 1] for c in as_tuple(state))
    s1 = s1 if s1 is None or len(s1) > 1 else s1[0]
    for t in range(T):
        y1, s1 = m.step(x[t, 1], s1)
        torch.testing.assert_close(y1, out[t, 1])


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_step_fed_its_own_state_back(cell):
    """step() skips re-checking the state object it returned last; in-place edits still count and
    anything else goes through the checks."""
    torch.manual_seed(0)
    m = Recurrent(cell, 3, 4, 2, dtype=F64).eval()
    x = randn(5, 2, 3)
    _, s = m.step(x[0])
    for c in as_tuple(s):
        c.zero_()  # a reset in place: the next step starts from zeros
    y, s = m.step(x[1], s)
    torch.testing.assert_close(y, m.step(x[1])[0])
    with pytest.raises(RuntimeError, match="Expected hidden"):
        m.step(randn(3, 3), s)  # the returned state with another batch size
    _, s1 = m.step(x[0, 0])  # unbatched: 2-D state components
    with pytest.raises(RuntimeError, match="should also be 3-D"):
        m.step(x[1, :1], s1)  # batched, one row: the 2-D state is still an error


def test_step_errors():
    bi = Recurrent("gru", 3, 4, bidirectional=True)
    with pytest.raises(ValueError, match="bidirectional"):
        bi.step(torch.randn(2, 3))
    for kwargs in (
        {"dropout": 0.2, "num_layers": 2},
        {"variational_dropout": 0.2},
        {"recurrent_dropout": 0.2},
        {"zoneout": 0.2},
        {"weight_drop": 0.2},
    ):
        m = Recurrent("lstm", 3, 4, **kwargs).train()
        with pytest.raises(ValueError, match=r"eval\(\)"):
            m.step(torch.randn(2, 3))
        m.eval().step(torch.randn(2, 3))  # fine in eval
    Recurrent("lstm", 3, 4).train().step(torch.randn(2, 3))  # nothing stochastic: fine
    m = Recurrent("lstm", 3, 4)
    with pytest.raises(ValueError, match=r"x_t\.size\(-1\) must be 3"):
        m.step(torch.randn(2, 5))
    with pytest.raises(ValueError, match="x_t of shape"):
        m.step(torch.randn(1, 2, 3))


# ---- option errors ---------------------------------------------------------------------------
@pytest.mark.parametrize("value", [1.5, -0.1, (0.2, 1.2)])
def test_zoneout_out_of_range(value):
    with pytest.raises(ValueError, match="zoneout must be a probability"):
        Recurrent("lstm", 3, 4, zoneout=value)


@pytest.mark.parametrize(("cell", "value"), [("lstm", (0.1, 0.2, 0.3)), ("lstm", (0.1,)),
                                             ("gru", (0.1, 0.2)), ("rnn_tanh", (0.1, 0.1))])
def test_zoneout_wrong_tuple_length(cell, value):
    n = 2 if cell == "lstm" else 1
    with pytest.raises(ValueError, match=rf"takes one probability or {n}"):
        Recurrent(cell, 3, 4, zoneout=value)


@pytest.mark.parametrize("name", ["variational_dropout", "recurrent_dropout", "weight_drop"])
@pytest.mark.parametrize("value", [-0.5, 1.01, True])
def test_dropout_probabilities_out_of_range(name, value):
    with pytest.raises(ValueError, match=name):
        Recurrent("gru", 3, 4, **{name: value})
    with pytest.raises(ValueError, match="dropout should be a number in range"):
        Recurrent("gru", 3, 4, dropout=1.5)


def test_cell_option_errors():
    with pytest.raises(ValueError, match="proj_size is not an option of the 'gru' cell"):
        Recurrent("gru", 3, 4, proj_size=2)
    with pytest.raises(ValueError, match="peephole is not an option of the 'gru' cell"):
        Recurrent("gru", 3, 4, peephole=True)
    with pytest.raises(ValueError, match="is not an option of the 'rnn_tanh' cell"):
        Recurrent("rnn_tanh", 3, 4, layer_norm=True)
    with pytest.raises(ValueError, match="unknown cell 'lstmm'"):
        Recurrent("lstmm", 3, 4)
    with pytest.raises(ValueError, match="proj_size has to be smaller than hidden_size"):
        Recurrent("lstm", 3, 4, proj_size=4)


def test_unknown_backend():
    with pytest.raises(BackendUnavailable, match=r"unknown backend 'cudnn'.*reference"):
        Recurrent("lstm", 3, 4, backend="cudnn")


@pytest.mark.parametrize(
    ("cell", "opts", "reason"),
    [
        ("lstm", {"layer_norm": True}, "layer_norm"),
        ("gru", {"layer_norm": True}, "layer_norm"),
        ("lstm", {"peephole": True}, "peephole"),
        ("lstm", {"zoneout": 0.1}, "zoneout"),
    ],
)
def test_native_backend_refuses_with_reason(cell, opts, reason):
    with pytest.raises(BackendUnavailable, match=rf"backend 'native' cannot run.*{reason}"):
        m = Recurrent(cell, 3, 4, backend="native", **opts)
        m(torch.randn(5, 2, 3))


def test_native_backend_refuses_training_recurrent_dropout_and_return_states():
    m = Recurrent("gru", 3, 4, backend="native", recurrent_dropout=0.3)
    x = torch.randn(5, 2, 3)
    m.eval()(x)  # fine at evaluation
    with pytest.raises(BackendUnavailable, match="recurrent dropout"):
        m.train()(x)
    with pytest.raises(BackendUnavailable, match="per-step states"):
        m.eval()(x, return_states=True)


# ---- return_states ---------------------------------------------------------------------------
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize(
    ("cell", "opts"),
    [("lstm", {}), ("lstm", {"proj_size": 2}), ("gru", {}), ("rnn_relu", {}),
     ("lstm", {"zoneout": (0.2, 0.4)})],
    ids=["lstm", "lstm-proj", "gru", "rnn_relu", "lstm-zoneout"],
)
def test_return_states(cell, opts, batch_first):
    torch.manual_seed(0)
    L, T, Bsz, H = 2, 5, 3, 4
    m = Recurrent(cell, 3, H, L, bidirectional=True, batch_first=batch_first, dtype=F64, **opts)
    m.eval()
    x = randn(T, Bsz, 3)
    lengths = torch.tensor([5, 2, 4])
    xin = x.transpose(0, 1) if batch_first else x
    out, final, states = m(xin, lengths=lengths, return_states=True)
    out_plain, final_plain = m(xin, lengths=lengths)
    torch.testing.assert_close(out, out_plain)
    final, final_plain = as_tuple(final), as_tuple(final_plain)
    sizes = m.cell.state_sizes()
    assert len(states) == len(sizes)
    if batch_first:
        states = tuple(s.transpose(1, 2) for s in states)
        out = out.transpose(0, 1)
    for k, n in enumerate(sizes):
        assert states[k].shape == (L, T, Bsz, 2 * n)
        torch.testing.assert_close(final[k], final_plain[k])
    # the top layer's h states are its output
    torch.testing.assert_close(states[0][-1], out)
    for k, n in enumerate(sizes):
        for b, Lb in enumerate(lengths.tolist()):
            assert (states[k][:, Lb:, b] == 0).all()
            for layer in range(L):
                torch.testing.assert_close(states[k][layer, Lb - 1, b, :n], final[k][2 * layer, b])
                torch.testing.assert_close(states[k][layer, 0, b, n:], final[k][2 * layer + 1, b])


def test_return_states_lstm_c_matches_step_by_step():
    torch.manual_seed(0)
    m = Recurrent("lstm", 3, 4, dtype=F64).eval()
    x = randn(6, 2, 3)
    _, (_, c_n), (hs, cs) = m(x, return_states=True)
    assert cs.shape == (1, 6, 2, 4)
    spec, p = m.cell, {k: v.detach() for k, v in m.layer_params(0).items()}
    s = spec.initial_state(2, dtype=F64)
    for t in range(6):
        s = spec.step(p, spec.project_input(p, x[t]), s)
        torch.testing.assert_close(hs[0, t], s[0])
        torch.testing.assert_close(cs[0, t], s[1])
    torch.testing.assert_close(c_n[0], s[1])
