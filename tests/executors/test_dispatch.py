"""The dispatcher's choices (``Recurrent.plan``, ``choose``, ``register_executor``) and agreement of
the native executor with the reference executor (outputs, final states and every gradient)."""

from __future__ import annotations

import pytest
import torch

import rnnkit.executors.dispatch as dispatch
from rnnkit import Recurrent
from rnnkit.cells import make_cell
from rnnkit.errors import BackendUnavailable
from rnnkit.executors import RunRequest, StepMasks, backend_names, choose, register_executor
from rnnkit.executors.base import Executor, RunResult
from rnnkit.executors.native import NativeExecutor
from rnnkit.executors.reference import ReferenceExecutor

CPU32 = RunRequest(torch.device("cpu"), torch.float32)
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")


@pytest.fixture
def native_and_reference_only(monkeypatch):
    """Auto's priority list with only the two executors every install has (no C++ extension)."""
    monkeypatch.setattr(dispatch, "_PRIORITY", ["native", "reference"])


@pytest.fixture
def private_registry(monkeypatch):
    """A copy of the registry with only native and reference in auto's list, that tests may extend
    without leaking executors into other tests."""
    monkeypatch.setattr(dispatch, "_PRIORITY", ["native", "reference"])
    monkeypatch.setattr(dispatch, "_REGISTRY", dict(dispatch._REGISTRY))


def names(plan):
    return [[e.name for e in layer] for layer in plan.executors]


def as_tuple(s):
    return s if isinstance(s, tuple) else (s,)


PLAIN = [
    ("rnn_tanh", {}),
    ("rnn_relu", {}),
    ("lstm", {}),
    ("lstm", {"proj_size": 2}),
    ("gru", {}),
]


def cid(case):
    name, opts = case
    return "-".join([name, *sorted(k for k, v in opts.items() if v)])


# ---- plans -----------------------------------------------------------------------------------
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize(
    "extra",
    [{}, {"bidirectional": True, "num_layers": 3}, {"dropout": 0.3, "num_layers": 2},
     {"weight_drop": 0.3}, {"variational_dropout": 0.3}, {"recurrent_dropout": 0.3}],
    ids=["plain", "bi-L3", "dropout", "weight_drop", "vardrop", "recdrop"],
)
@pytest.mark.parametrize("case", PLAIN, ids=cid)
def test_auto_runs_plain_stacks_natively(case, extra, training, monkeypatch, native_and_reference_only):
    name, opts = case
    m = Recurrent(name, 3, 4, **opts, **extra).train(training)
    plan = m.plan()
    stochastic_in_loop = training and ("recurrent_dropout" in extra or "variational_dropout" in extra)
    if stochastic_in_loop:
        assert not plan.whole_stack
        return
    assert plan.whole_stack
    assert plan.stack_refused is None
    assert all(n == "native" for layer in names(plan) for n in layer)
    assert len(plan.executors) == m.num_layers
    assert all(len(layer) == m.num_directions for layer in plan.executors)
    # and forward really makes one native call for the whole stack
    calls = {"stack": 0, "run": 0}
    orig_stack = NativeExecutor.run_stack

    def spy_stack(self, *a, **k):
        calls["stack"] += 1
        return orig_stack(self, *a, **k)

    def spy_run(self, *a, **k):  # pragma: no cover - must not be reached
        calls["run"] += 1
        raise AssertionError("the per-layer path ran")

    monkeypatch.setattr(NativeExecutor, "run_stack", spy_stack)
    monkeypatch.setattr(ReferenceExecutor, "run", spy_run)
    m(torch.randn(5, 2, 3), lengths=torch.tensor([5, 3]))
    assert calls == {"stack": 1, "run": 0}


VARIANTS = [
    pytest.param("lstm", {"layer_norm": True}, True, "layer_norm", id="lstm-layer_norm"),
    pytest.param("gru", {"layer_norm": True}, True, "layer_norm", id="gru-layer_norm"),
    pytest.param("lstm", {"peephole": True}, True, "peephole", id="lstm-peephole"),
    pytest.param("lstm", {"zoneout": 0.2}, False, "zoneout", id="lstm-zoneout-eval"),
    pytest.param("gru", {"zoneout": 0.2}, True, "zoneout", id="gru-zoneout-train"),
    pytest.param("rnn_tanh", {"recurrent_dropout": 0.2}, True, "recurrent dropout",
                 id="rnn-recdrop-train"),
    pytest.param("lstm", {"recurrent_dropout": 0.2}, True, "recurrent dropout",
                 id="lstm-recdrop-train"),
]


@pytest.mark.parametrize(("name", "opts", "training", "reason"), VARIANTS)
def test_auto_picks_reference_when_native_refuses(
    name, opts, training, reason, native_and_reference_only, monkeypatch
):
    m = Recurrent(name, 3, 4, 2, bidirectional=True, **opts).train(training)
    plan = m.plan()
    assert not plan.whole_stack
    assert reason in plan.stack_refused
    assert names(plan) == [["reference", "reference"]] * 2
    for layer in plan.refused:
        for why in layer:
            assert reason in why["native"]
    calls = []
    orig = ReferenceExecutor.run_sweep

    def spy(self, cell, params, x, state0, sweep, *rest):
        calls.append(sweep.reverse)
        return orig(self, cell, params, x, state0, sweep, *rest)

    monkeypatch.setattr(ReferenceExecutor, "run_sweep", spy)
    m(torch.randn(5, 2, 3))
    assert calls == [False, True, False, True]


@pytest.mark.parametrize(("name", "opts", "training", "reason"), VARIANTS)
def test_auto_never_picks_native_for_variants(name, opts, training, reason):
    """Whatever else is installed (fused C++ executor...), auto's choice supports the request and
    every executor ahead of it in the priority list said why not."""
    m = Recurrent(name, 3, 4, 2, **opts).train(training)
    plan = m.plan()
    assert not plan.whole_stack
    request = RunRequest(torch.device("cpu"), torch.float32, m._in_loop_masks(), False)
    order = backend_names()
    for spec, layer, why in zip(m.cells, plan.executors, plan.refused, strict=True):
        chosen = layer[0]
        assert chosen.name != "native"
        assert chosen.supports(spec, request) is None
        assert set(why[0]) == set(order[: order.index(chosen.name)])
        assert reason in NativeExecutor().supports(spec, request)
        assert all(isinstance(v, str) and v for v in why[0].values())


def test_auto_prefers_fused_cpu_for_plain_gru_and_elman_but_native_for_lstm():
    """Where the C++ extension is built, fused_cpu beats torch's per-step GRU/RNN loops on CPU;
    the plain LSTM stays on oneDNN (fused_cpu yields to native)."""
    from rnnkit._ext import load_extension

    _, reason = load_extension("fused_cpu")
    assert reason is None, f"`make` builds the fused_cpu extension: {reason}"
    for name in ("gru", "rnn_tanh", "rnn_relu"):
        plan = Recurrent(name, 3, 4, 2).plan()
        assert not plan.whole_stack and "fused_cpu" in plan.stack_refused
        assert names(plan) == [["fused_cpu"], ["fused_cpu"]]
    assert Recurrent("lstm", 3, 4, 2).plan().whole_stack


def test_auto_runs_a_small_plain_lstm_fused_and_a_large_one_on_onednn():
    from rnnkit.executors.fused_cpu import SMALL_LSTM

    m = Recurrent("lstm", 3, 64, 2)
    assert m.plan(batch=SMALL_LSTM // 64).whole_stack is False
    assert names(m.plan(batch=1)) == [["fused_cpu"], ["fused_cpu"]]
    assert m.plan(batch=SMALL_LSTM // 64 + 1).whole_stack and m.plan().whole_stack  # unknown batch: oneDNN
    x = torch.randn(5, 2, 3)
    ref = Recurrent("lstm", 3, 64, 2, backend="reference")
    ref.load_state_dict(m.state_dict())
    torch.testing.assert_close(m(x)[0], ref(x)[0], atol=1e-5, rtol=1e-5)  # the forward used the small plan


def test_auto_runs_a_large_plain_lstm_with_lengths_fused():
    """With lengths, torch's LSTM takes a packed sequence, which on CPU leaves oneDNN for a per-step
    loop whose backward was 50x slower at (T=1344, B=8, H=512): auto keeps such calls on fused_cpu."""
    from rnnkit.executors.fused_cpu import SMALL_LSTM

    m = Recurrent("lstm", 3, 64, 2)
    big = SMALL_LSTM // 64 + 1
    assert m.plan(batch=big).whole_stack
    assert names(m.plan(batch=big, has_lengths=True)) == [["fused_cpu"], ["fused_cpu"]]
    x, lengths = torch.randn(5, big, 3, requires_grad=True), torch.randint(1, 6, (big,))
    assert names(m.plan_for(x, lengths=lengths)) == [["fused_cpu"], ["fused_cpu"]]
    ref = Recurrent("lstm", 3, 64, 2, backend="reference")
    ref.load_state_dict(m.state_dict())
    out, (h, c) = m(x, lengths=lengths)
    out_r, (h_r, c_r) = ref(x, lengths=lengths)
    for a, b in ((out, out_r), (h, h_r), (c, c_r)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    (g,) = torch.autograd.grad(out.sum() + h.sum(), x)
    (g_r,) = torch.autograd.grad(out_r.sum() + h_r.sum(), x)
    torch.testing.assert_close(g, g_r, atol=1e-5, rtol=1e-5)


def test_recurrent_dropout_runs_natively_in_eval():
    m = Recurrent("lstm", 3, 4, 2, recurrent_dropout=0.5)
    assert not m.train().plan().whole_stack
    plan = m.eval().plan()
    assert plan.whole_stack and names(plan) == [["native"], ["native"]]


def test_training_variational_dropout_and_residual_run_native_per_layer(native_and_reference_only):
    for kwargs, training in (({"variational_dropout": 0.3}, True), ({"residual": True}, False)):
        m = Recurrent("lstm", 4, 4, 2, bidirectional=True, **kwargs).train(training)
        plan = m.plan()
        assert not plan.whole_stack
        assert plan.stack_refused
        assert names(plan) == [["native", "native"]] * 2


def test_return_states_runs_per_layer():
    from rnnkit._ext import load_extension

    m = Recurrent("gru", 3, 4, 2)
    plan = m.plan(return_states=True)
    assert not plan.whole_stack
    # fused_cpu returns per-step states; native cannot, so without the extension: reference
    expected = "reference" if load_extension("fused_cpu")[1] else "fused_cpu"
    assert names(plan) == [[expected], [expected]]
    assert "per-step states" in plan.stack_refused


def test_named_reference_backend_never_runs_native(monkeypatch):
    m = Recurrent("lstm", 3, 4, 2, bidirectional=True, backend="reference")
    plan = m.plan()
    assert not plan.whole_stack and names(plan) == [["reference", "reference"]] * 2

    def boom(*a, **k):
        raise AssertionError("native ran")

    monkeypatch.setattr(NativeExecutor, "run_stack", boom)
    monkeypatch.setattr(NativeExecutor, "run", boom)
    m(torch.randn(4, 2, 3))


def test_named_native_backend_per_layer_for_residual():
    m = Recurrent("gru", 4, 4, 2, residual=True, backend="native")
    plan = m.plan()
    assert not plan.whole_stack and names(plan) == [["native"], ["native"]]


def test_unsupported_dtype_is_refused_by_native():
    spec = make_cell("lstm", 3, 4)
    reason = NativeExecutor().supports(spec, RunRequest(torch.device("cpu"), torch.int32))
    assert reason and "dtype" in reason


# ---- choose / register_executor ----------------------------------------------------------------
def test_choose_named_backend_raises_with_reason():
    spec = make_cell("lstm", 3, 4, layer_norm=True)
    with pytest.raises(BackendUnavailable, match="backend 'native' cannot run this layer: layer_norm"):
        choose(spec, CPU32, "native")
    executor, refused = choose(spec, CPU32, "reference")
    assert executor.name == "reference" and refused == {}
    with pytest.raises(BackendUnavailable, match="unknown backend 'nope'"):
        choose(spec, CPU32, "nope")


def test_choose_auto_reports_refusals(native_and_reference_only):
    spec = make_cell("gru", 3, 4, layer_norm=True)
    executor, refused = choose(spec, CPU32)
    assert executor.name == "reference"
    assert refused == {"native": spec.unsupported_by_torch()}
    executor, refused = choose(make_cell("gru", 3, 4), CPU32)
    assert executor.name == "native" and refused == {}


def test_default_priority_ends_with_native_then_reference():
    order = backend_names()
    assert order[-1] == "reference"
    assert "native" in order and order.index("native") < order.index("reference")


class _Spy(Executor):
    """An executor that supports everything and runs the reference loop."""

    description = "test double"

    def __init__(self, name, yields_to=None):
        self.name = name
        self._yields = yields_to
        self.calls = 0

    def supports(self, cell, request):
        return None

    def yields_to(self, cell, request):
        return self._yields

    def run_sweep(self, *args) -> RunResult:
        self.calls += 1
        return ReferenceExecutor().run_sweep(*args)


def test_register_executor_priority(private_registry):
    spy = _Spy("spy")
    register_executor(spy, before="native")
    order = backend_names()
    assert order.index("spy") == order.index("native") - 1
    spec = make_cell("gru", 3, 4, layer_norm=True)
    executor, refused = choose(spec, CPU32)
    assert executor is spy
    assert "spy" not in refused
    # registering again moves it; before=None appends it after the reference
    register_executor(spy, before=None)
    assert backend_names()[-1] == "spy"
    assert backend_names().count("spy") == 1
    executor, _ = choose(spec, CPU32)
    assert executor.name != "spy"


def test_yields_to_defers_to_a_faster_executor(private_registry):
    spy = _Spy("spy", yields_to="native")
    register_executor(spy, before="native")
    executor, refused = choose(make_cell("lstm", 3, 4), CPU32)
    assert executor.name == "native"
    assert "'native' is faster" in refused["spy"]
    # but not when native cannot run it
    executor, refused = choose(make_cell("lstm", 3, 4, peephole=True), CPU32)
    assert executor is spy


def test_registered_executor_runs_through_recurrent(private_registry):
    spy = _Spy("spy")
    register_executor(spy, before="native")
    m = Recurrent("lstm", 3, 4, 2, bidirectional=True, layer_norm=True)
    plan = m.plan()
    assert names(plan) == [["spy", "spy"]] * 2
    ref = Recurrent("lstm", 3, 4, 2, bidirectional=True, layer_norm=True, backend="reference")
    ref.load_state_dict(m.state_dict())
    x = torch.randn(5, 2, 3)
    out, _ = m(x)
    assert spy.calls == 4
    torch.testing.assert_close(out, ref(x)[0])
    m2 = Recurrent("gru", 3, 4, backend="spy")
    m2(x)
    assert spy.calls == 5


# ---- native vs reference -----------------------------------------------------------------------
def grads_of(m, x, state, lengths, seed=None):
    if seed is not None:
        torch.manual_seed(seed)
    x = x.clone().requires_grad_()
    state = tuple(s.clone().requires_grad_() for s in state)
    out, final = m(x, state if len(state) > 1 else state[0], lengths=lengths)
    final = as_tuple(final)
    g = torch.Generator().manual_seed(123)
    loss = (out * torch.randn(out.shape, generator=g, dtype=out.dtype)).sum()
    for f in final:
        loss = loss + (f * torch.randn(f.shape, generator=g, dtype=f.dtype)).sum()
    params = dict(m.named_parameters())
    grads = torch.autograd.grad(loss, [x, *state, *params.values()])
    return out.detach(), tuple(f.detach() for f in final), dict(
        zip(["input", *[f"state{k}" for k in range(len(state))], *params], grads, strict=True)
    )


AGREEMENT = [
    pytest.param({}, False, id="plain-eval"),
    pytest.param({}, True, id="plain-train"),
    pytest.param({"weight_drop": 0.4}, True, id="weight_drop-train"),
    pytest.param({"residual": True}, False, id="residual"),
    pytest.param({"residual": True, "weight_drop": 0.3}, True, id="residual-weight_drop-train"),
    pytest.param({"variational_dropout": 0.4}, False, id="vardrop-eval"),
    pytest.param({"variational_dropout": 0.4}, True, id="vardrop-train"),
    pytest.param({"recurrent_dropout": 0.4}, False, id="recdrop-eval"),
]


@pytest.mark.parametrize(("extra", "training"), AGREEMENT)
@pytest.mark.parametrize("case", PLAIN, ids=cid)
def test_native_matches_reference(case, extra, training):
    name, opts = case
    T, B, I, H = 6, 3, 4, 4
    kwargs = dict(num_layers=2, bidirectional=True, **opts, **extra)
    torch.manual_seed(0)
    native = Recurrent(name, I, H, backend="native", **kwargs).train(training)
    reference = Recurrent(name, I, H, backend="reference", **kwargs).train(training)
    reference.load_state_dict(native.state_dict())
    auto = Recurrent(name, I, H, **kwargs).train(training)
    auto.load_state_dict(native.state_dict())
    g = torch.Generator().manual_seed(1)
    x = torch.randn(T, B, I, generator=g)
    state = tuple(torch.randn(4, B, n, generator=g) for n in native.cell.state_sizes())
    lengths = torch.tensor([6, 2, 4])
    seed = 7 if training else None
    out_n, fin_n, g_n = grads_of(native, x, state, lengths, seed)
    out_r, fin_r, g_r = grads_of(reference, x, state, lengths, seed)
    out_a, fin_a, g_a = grads_of(auto, x, state, lengths, seed)
    tol = {"rtol": 1e-5, "atol": 1e-5}
    for out, fin, grads in ((out_n, fin_n, g_n), (out_a, fin_a, g_a)):
        torch.testing.assert_close(out, out_r, **tol)
        for a, b in zip(fin, fin_r, strict=True):
            torch.testing.assert_close(a, b, **tol)
        assert grads.keys() == g_r.keys()
        for k in g_r:
            torch.testing.assert_close(grads[k], g_r[k], **tol, msg=lambda m, k=k: f"{k}: {m}")
    # the regulariser is really active in training (the runs differ from evaluation)
    if training and extra.keys() & {"weight_drop", "variational_dropout"}:
        out_eval, _, _ = grads_of(reference.eval(), x, state, lengths)
        assert not torch.allclose(out_eval, out_r)


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("case", PLAIN, ids=cid)
def test_native_executor_run_matches_reference_run(case, with_lengths, reverse):
    name, opts = case
    T, B, I, H = 5, 3, 3, 4
    torch.manual_seed(0)
    cell = make_cell(name, I, H, **opts)
    params = {
        k: (torch.randn(s) * 0.5).requires_grad_() for k, s in cell.param_shapes().items()
    }
    x = torch.randn(T, B, I, requires_grad=True)
    state0 = tuple(torch.randn(B, n, requires_grad=True) for n in cell.state_sizes())
    lengths = torch.tensor([5, 1, 3]) if with_lengths else None
    results = []
    for executor in (NativeExecutor(), ReferenceExecutor()):
        res = executor.run(cell, params, x, state0, lengths, reverse=reverse)
        loss = res.outputs.square().sum() + sum(s.sum() for s in res.final_state)
        grads = torch.autograd.grad(loss, [x, *state0, *params.values()])
        results.append((res.outputs.detach(), [s.detach() for s in res.final_state], grads))
    (o_n, f_n, g_n), (o_r, f_r, g_r) = results
    torch.testing.assert_close(o_n, o_r, rtol=1e-5, atol=1e-5)
    for a, b in zip(f_n, f_r, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    for a, b in zip(g_n, g_r, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_native_executor_run_refuses_masks_and_states():
    cell = make_cell("gru", 3, 4)
    params = {k: torch.randn(s) for k, s in cell.param_shapes().items()}
    x, state0 = torch.randn(4, 2, 3), cell.initial_state(2)
    with pytest.raises(ValueError, match="recurrent dropout"):
        NativeExecutor().run(cell, params, x, state0, masks=StepMasks(recurrent=torch.ones(2, 4)))
    with pytest.raises(ValueError, match="per-step states"):
        NativeExecutor().run(cell, params, x, state0, return_states=True)
    # an empty StepMasks is no mask
    NativeExecutor().run(cell, params, x, state0, masks=StepMasks())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_native_and_reference_agree_on_dtype(dtype):
    torch.manual_seed(0)
    native = Recurrent("lstm", 3, 5, 2, bidirectional=True, backend="native", dtype=dtype)
    reference = Recurrent("lstm", 3, 5, 2, bidirectional=True, backend="reference", dtype=dtype)
    reference.load_state_dict(native.state_dict())
    x = torch.randn(4, 2, 3, dtype=dtype)
    out_n, (h_n, _) = native(x)
    out_r, (h_r, _) = reference(x)
    assert out_n.dtype == dtype
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(out_n, out_r, rtol=tol, atol=tol)
    torch.testing.assert_close(h_n, h_r, rtol=tol, atol=tol)


# ---- auto (whatever it picks) vs reference for the variants --------------------------------------
AUTO_VARIANTS = [
    pytest.param("lstm", {"layer_norm": True}, False, id="lstm-layer_norm"),
    pytest.param("lstm", {"layer_norm": True, "peephole": True, "proj_size": 2}, False,
                 id="lstm-layer_norm-peephole-proj"),
    pytest.param("gru", {"layer_norm": True}, False, id="gru-layer_norm"),
    pytest.param("lstm", {"zoneout": (0.2, 0.5)}, False, id="lstm-zoneout-eval"),
    pytest.param("gru", {"zoneout": 0.3}, True, id="gru-zoneout-train"),
    pytest.param("lstm", {"recurrent_dropout": 0.3, "proj_size": 2}, True, id="lstm-recdrop-train"),
    pytest.param("rnn_tanh", {"recurrent_dropout": 0.3, "weight_drop": 0.3}, True,
                 id="rnn-recdrop-weightdrop-train"),
]


@pytest.mark.parametrize(("name", "opts", "training"), AUTO_VARIANTS)
def test_auto_matches_reference_for_variants(name, opts, training):
    """Masks are sampled by the layer, so identical seeds give identical masks on every executor.
    float64: layer norm over few units amplifies float32 rounding differences between executors."""
    T, B, I, H = 6, 3, 4, 4
    kwargs = dict(num_layers=2, bidirectional=True, dtype=torch.float64, **opts)
    torch.manual_seed(0)
    auto = Recurrent(name, I, H, **kwargs).train(training)
    reference = Recurrent(name, I, H, backend="reference", **kwargs).train(training)
    reference.load_state_dict(auto.state_dict())
    g = torch.Generator().manual_seed(1)
    x = torch.randn(T, B, I, generator=g, dtype=torch.float64)
    state = tuple(
        torch.randn(4, B, n, generator=g, dtype=torch.float64) for n in auto.cell.state_sizes()
    )
    lengths = torch.tensor([6, 2, 4])
    out_a, fin_a, g_a = grads_of(auto, x, state, lengths, seed=5)
    out_r, fin_r, g_r = grads_of(reference, x, state, lengths, seed=5)
    tol = {"rtol": 1e-9, "atol": 1e-10}
    torch.testing.assert_close(out_a, out_r, **tol)
    for a, b in zip(fin_a, fin_r, strict=True):
        torch.testing.assert_close(a, b, **tol)
    for k in g_r:
        torch.testing.assert_close(g_a[k], g_r[k], **tol, msg=lambda m, k=k: f"{k}: {m}")


_PEEPHOLE_REPRO = """
import torch
from rnnkit import Recurrent
for dtype in (torch.float32, torch.float64):
    torch.manual_seed(0)
    auto = Recurrent("lstm", 3, 4, 2, bidirectional=True, peephole=True, dtype=dtype)
    ref = Recurrent("lstm", 3, 4, 2, bidirectional=True, peephole=True, dtype=dtype,
                    backend="reference")
    ref.load_state_dict(auto.state_dict())
    x = torch.randn(5, 2, 3, dtype=dtype, requires_grad=True)
    outs = []
    for m in (auto, ref):
        out, _ = m(x, lengths=torch.tensor([5, 3]))
        (gx,) = torch.autograd.grad(out.square().sum(), x)
        outs.append((out.detach(), gx))
    torch.testing.assert_close(outs[0][0], outs[1][0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(outs[0][1], outs[1][1], rtol=1e-5, atol=1e-5)
print("OK")
"""


def test_auto_lstm_peephole_without_layer_norm_does_not_crash():
    """Regression: fused_cpu.cpp once read the LN_c bias from a `zeros` buffer sized 0 when
    peephole was on (peephole=True, layer_norm=False): a segfault. Hence a subprocess."""
    import subprocess
    import sys

    from rnnkit._ext import load_extension

    _, unavailable = load_extension("fused_cpu")
    if unavailable is not None:
        pytest.skip(f"fused_cpu: {unavailable}")
    r = subprocess.run(
        [sys.executable, "-c", _PEEPHOLE_REPRO], capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0 and "OK" in r.stdout, (r.returncode, r.stderr[-2000:])
