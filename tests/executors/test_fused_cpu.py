"""The fused CPU executor against the reference executor (the specification).

Outputs, final states and every gradient (input, initial state, each parameter) must match over
sizes (B=1, T=1, H not a multiple of 8), every cell option, masks, lengths and both directions;
plus float64 gradcheck through the fused path and the dispatcher's choices.
"""

from __future__ import annotations

import copy

import pytest
import torch

from rnnkit.cells import make_cell
from rnnkit.executors import RunRequest, StepMasks, choose, get_executor
from rnnkit.executors.fused_cpu import FusedCPUExecutor

fused = FusedCPUExecutor()
_, UNAVAILABLE = __import__("rnnkit._ext", fromlist=["load_extension"]).load_extension("fused_cpu")


@pytest.fixture(autouse=True)
def _extension_built():
    """`make` builds the extension; a build failure must fail these tests, not skip them."""
    if UNAVAILABLE is not None:
        pytest.fail(f"fused_cpu extension unavailable: {UNAVAILABLE}")

CONFIGS = [
    ("rnn_tanh", {}),
    ("rnn_relu", {}),
    ("rnn_modrelu", {}),
    ("gru", {}),
    ("gru", {"layer_norm": True}),
    ("lstm", {}),
    ("lstm", {"layer_norm": True}),
    ("lstm", {"peephole": True}),
    ("lstm", {"proj_size": 3}),
    ("lstm", {"layer_norm": True, "peephole": True, "proj_size": 4}),
    ("indrnn", {}),
    ("indrnn", {"nonlinearity": "tanh"}),
    ("indrnn", {"recurrent_max": 0.6}),  # u ~ N(0, 0.5^2): some units clamped
]
SIZES = [(1, 1, 3, 5), (4, 3, 5, 7), (6, 2, 4, 9)]  # T, B, I, H


def _make(name, options, I, H, dtype, bias=True, seed=0):
    torch.manual_seed(seed)
    cell = make_cell(name, I, H, bias, **options)
    params = {
        k: torch.randn(shape, dtype=dtype) * 0.5
        for k, shape in cell.param_shapes().items()
    }
    for k, p in params.items():
        if k.startswith("layer_norm_") and k.endswith("_weight"):
            p.add_(1.0)
        p.requires_grad_(True)
    return cell, params


def _inputs(cell, T, B, dtype, lengths, masks_kind, training=True):
    x = torch.randn(T, B, cell.input_size, dtype=dtype, requires_grad=True)
    state0 = tuple(torch.randn(B, n, dtype=dtype, requires_grad=True) for n in cell.state_sizes())
    lens = None
    if lengths:
        lens = torch.randint(1, T + 1, (B,))
        lens[0] = T
    masks = None
    if masks_kind == "recurrent":
        masks = StepMasks(recurrent=torch.empty(B, cell.output_size, dtype=dtype).bernoulli_(0.7) / 0.7)
    elif masks_kind == "zoneout":
        z = tuple(
            torch.empty(T, B, n, dtype=dtype).bernoulli_(0.3) for n in cell.state_sizes()
        )
        masks = StepMasks(zoneout=z)
    elif masks_kind == "zoneout_eval":
        masks = StepMasks(zoneout=tuple(torch.tensor(0.25, dtype=dtype) for _ in cell.state_sizes()))
    elif masks_kind == "both":
        z = (torch.empty(T, B, cell.output_size, dtype=dtype).bernoulli_(0.3),) + (None,) * (
            len(cell.state_sizes()) - 1
        )
        masks = StepMasks(
            recurrent=torch.empty(B, cell.output_size, dtype=dtype).bernoulli_(0.5) / 0.5, zoneout=z
        )
    return x, state0, lens, masks


def _run_and_grads(executor, cell, params, x, state0, lens, reverse, masks):
    out, final, _ = executor.run(cell, params, x, state0, lens, reverse=reverse, masks=masks)
    g = torch.Generator().manual_seed(1)
    loss = (out * torch.randn(out.shape, generator=g, dtype=out.dtype)).sum()
    for s in final:
        loss = loss + (s * torch.randn(s.shape, generator=g, dtype=s.dtype)).sum()
    leaves = [x, *state0, *params.values()]
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    names = ["x", *[f"state{i}" for i in range(len(state0))], *params]
    return out, final, dict(zip(names, grads, strict=True))


def _float64(params, x, state0, masks):
    """The same problem in float64 (fresh leaves), for the float32 checks' ground truth."""
    p64 = {k: v.detach().double().requires_grad_() for k, v in params.items()}
    x64 = x.detach().double().requires_grad_()
    s64 = tuple(s.detach().double().requires_grad_() for s in state0)
    if masks is not None:
        masks = StepMasks(
            recurrent=None if masks.recurrent is None else masks.recurrent.double(),
            zoneout=None if masks.zoneout is None else tuple(
                None if z is None else z.double() for z in masks.zoneout),
        )
    return p64, x64, s64, masks


def _assert_matches(got, ref, truth, what, tol):
    """got == ref within tol; in float32, also wherever got is as close to the float64 truth as the
    reference is (plus tol): where the problem is ill-conditioned (a layer norm of a nearly constant
    row) two correct float32 results differ by more than tol, each by its own rounding."""
    if truth is None:
        torch.testing.assert_close(got, ref, **tol, msg=lambda m: f"{what}: {m}")
        return
    truth = truth.to(got.dtype)
    own_error = (ref - truth).abs()
    allowed = tol["atol"] + tol["rtol"] * truth.abs() + 3 * own_error
    worst = ((got - truth).abs() - allowed).max().item()
    assert worst <= 0, f"{what}: off the float64 result by {worst:.3g} more than allowed"


def _check(name, options, T, B, I, H, reverse, lengths, masks_kind, dtype=torch.float32, bias=True):
    cell, params = _make(name, options, I, H, dtype, bias)
    x, state0, lens, masks = _inputs(cell, T, B, dtype, lengths, masks_kind)
    ref = _run_and_grads(get_executor("reference"), cell, params, x, state0, lens, reverse, masks)
    got = _run_and_grads(fused, cell, params, x, state0, lens, reverse, masks)
    truth = None
    if dtype == torch.float32:
        p64, x64, s64, m64 = _float64(params, x, state0, masks)
        truth = _run_and_grads(get_executor("reference"), cell, p64, x64, s64, lens, reverse, m64)
    tol = {"atol": 2e-5, "rtol": 2e-4} if dtype == torch.float32 else {"atol": 1e-10, "rtol": 1e-9}
    _assert_matches(got[0], ref[0], truth and truth[0], "output", tol)
    for k, (a, b) in enumerate(zip(got[1], ref[1], strict=True)):
        _assert_matches(a, b, truth and truth[1][k], f"final state {k}", tol)
    assert got[2].keys() == ref[2].keys()
    for key in ref[2]:
        assert (got[2][key] is None) == (ref[2][key] is None), key
        if ref[2][key] is not None:
            _assert_matches(got[2][key], ref[2][key], truth and truth[2][key], key, tol)


@pytest.mark.parametrize("name,options", CONFIGS, ids=lambda v: str(v))
@pytest.mark.parametrize("T,B,I,H", SIZES)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("lengths", [False, True])
def test_matches_reference(name, options, T, B, I, H, reverse, lengths):
    _check(name, options, T, B, I, H, reverse, lengths, None)


# Sizes for the packed float32 kernels (packed_gemm.h): 360 rows run the projections through them
# (from 256 rows on), 4H = 76 and I = 13 leave partial 32-column panels, 9 rows a partial row tile;
# B = 1 with 12 steps runs the per-step kernel one row at a time, 4H = 160 in full panels.
@pytest.mark.parametrize("name,options", [("lstm", {}), ("lstm", {"layer_norm": True, "peephole": True}),
                                          ("lstm", {"proj_size": 7}), ("gru", {}), ("rnn_tanh", {})],
                         ids=lambda v: str(v))
@pytest.mark.parametrize("T,B,I,H", [(40, 9, 13, 19), (12, 1, 6, 40)])
@pytest.mark.parametrize("gemm", ["packed", "blas"])  # RNNKIT_FUSED_NO_PACK is read per call
def test_packed_kernel_sizes_match_reference(name, options, T, B, I, H, gemm, monkeypatch):
    monkeypatch.setenv("RNNKIT_FUSED_NO_PACK", "1" if gemm == "blas" else "")
    _check(name, options, T, B, I, H, False, True, None)


# The weight-gradient kernel (weight_grad.h): dW = dG^T X over M rows. 300 and 257 rows leave a partial
# block of the sum over rows (256 per block), N = 76 and 9 partial row tiles of 8, K = 13, 33 and 128
# partial and full 32-column panels; 255 rows stay on BLAS.
@pytest.mark.parametrize("M,N,K", [(300, 76, 13), (257, 9, 33), (600, 512, 128), (255, 16, 40)])
@pytest.mark.parametrize("gemm", ["packed", "blas"])
def test_weight_gradient_matches_float64(M, N, K, gemm, monkeypatch):
    monkeypatch.setenv("RNNKIT_FUSED_NO_PACK", "1" if gemm == "blas" else "")
    ext = __import__("rnnkit._ext", fromlist=["load_extension"]).load_extension("fused_cpu")[0]
    gen = torch.Generator().manual_seed(M + N + K)
    x, w = torch.randn(M, K, generator=gen), torch.randn(N, K, generator=gen)
    dg = torch.randn(M, N, generator=gen)
    dx, dw, db = ext.project_backward(dg, x, w, True, True, True)
    exact = dg.double().t() @ x.double()
    assert dw.shape == (N, K) and dw.dtype == torch.float32
    torch.testing.assert_close(dw.double(), exact, rtol=0, atol=2e-6 * exact.abs().max().item())
    torch.testing.assert_close(dx.double(), dg.double() @ w.double(), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(db.double(), dg.double().sum(0), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name,options", CONFIGS, ids=lambda v: str(v))
@pytest.mark.parametrize("masks_kind", [None, "both"])
@pytest.mark.parametrize("reverse", [False, True])
def test_inference_path_equals_training_path(name, options, masks_kind, reverse):
    """Without autograd the kernels keep one step of scratch instead of every step's buffers: the
    outputs, final states and per-step states must be those of the path that keeps them."""
    cell, params = _make(name, options, 5, 7, torch.float32)
    x, state0, lens, masks = _inputs(cell, 9, 4, torch.float32, True, masks_kind)
    train = fused.run(cell, params, x, state0, lens, reverse=reverse, masks=masks, return_states=True)
    with torch.no_grad():
        infer = fused.run(cell, params, x, state0, lens, reverse=reverse, masks=masks,
                          return_states=True)
    assert infer[0].grad_fn is None
    torch.testing.assert_close(infer[0], train[0], rtol=0, atol=0)
    for a, b in zip(infer[1], train[1], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for a, b in zip(infer[2], train[2], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("name,options", CONFIGS, ids=lambda v: str(v))
@pytest.mark.parametrize("masks_kind", ["recurrent", "zoneout", "zoneout_eval", "both"])
@pytest.mark.parametrize("reverse", [False, True])
def test_masks_match_reference(name, options, masks_kind, reverse):
    _check(name, options, 5, 3, 4, 6, reverse, True, masks_kind)


@pytest.mark.parametrize("name,options", [("lstm", {"layer_norm": True, "peephole": True}),
                                          ("lstm", {}), ("gru", {"layer_norm": True})],
                         ids=lambda v: str(v))
@pytest.mark.parametrize("threads", [1, 2])
def test_large_buffers_and_threads(name, options, threads):
    """Buffers of 1 MiB and more come from the kernel's block cache: the second call gets the first
    call's freed (dirty) blocks. Two threads split the backward pass that runs after the loop.
    (float64: at this size float32's rounding, amplified over the steps, exceeds the tolerance.)"""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for _ in range(2):
            _check(name, options, 16, 48, 8, 64, False, True, "zoneout", dtype=torch.float64)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("name,options", CONFIGS, ids=lambda v: str(v))
@pytest.mark.parametrize("reverse", [False, True])
def test_batch_split_over_threads(name, options, reverse):
    """With two threads and B >= 16 each thread runs the whole time loop on its own rows (here 9 and
    10 of 19): masks, lengths, projection and both directions as with one chunk."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        _check(name, options, 5, 19, 4, 6, reverse, True, "both", dtype=torch.float64)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("name", ["rnn_tanh", "gru", "lstm", "indrnn"])
def test_no_bias(name):
    _check(name, {}, 4, 2, 3, 5, False, True, "recurrent", bias=False)


def test_float64_tight():
    _check("lstm", {"layer_norm": True, "peephole": True, "proj_size": 2}, 5, 3, 4, 6, True, True,
           "both", dtype=torch.float64)


@pytest.mark.parametrize(
    "name,options",
    [("rnn_tanh", {}), ("rnn_relu", {}), ("rnn_modrelu", {}), ("gru", {"layer_norm": True}),
     ("lstm", {"layer_norm": True, "peephole": True, "proj_size": 2}), ("indrnn", {}),
     ("indrnn", {"nonlinearity": "tanh", "recurrent_max": 0.6})],
    ids=lambda v: str(v),
)
def test_gradcheck(name, options):
    dtype = torch.float64
    cell, params = _make(name, options, 3, 4, dtype)
    T, B = 4, 2
    x, state0, lens, masks = _inputs(cell, T, B, dtype, True, "both")
    names = list(params)

    def f(x, *rest):
        n = len(state0)
        st, ps = rest[:n], dict(zip(names, rest[n:], strict=True))
        out, final, _ = fused.run(cell, ps, x, st, lens, reverse=True, masks=masks)
        return (out, *final)

    assert torch.autograd.gradcheck(f, (x, *state0, *params.values()), atol=1e-6)


def test_layer_uses_fused_for_variants_and_matches_reference():
    from rnnkit.layers.recurrent import Recurrent

    torch.manual_seed(0)
    layer = Recurrent("lstm", 5, 6, num_layers=2, bidirectional=True, layer_norm=True, zoneout=0.2)
    plan = layer.plan()
    assert not plan.whole_stack
    assert all(e.name == "fused_cpu" for row in plan.executors for e in row)
    ref = Recurrent("lstm", 5, 6, num_layers=2, bidirectional=True, layer_norm=True, zoneout=0.2,
                    backend="reference")
    ref.load_state_dict(layer.state_dict())
    layer.eval()
    ref.eval()
    x = torch.randn(7, 3, 5)
    lengths = torch.tensor([7, 3, 5])
    (y1, (h1, c1)), (y2, (h2, c2)) = layer(x, lengths=lengths), ref(x, lengths=lengths)
    for a, b in ((y1, y2), (h1, h2), (c1, c2)):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=2e-4)


def test_dispatch_choices():
    cpu = RunRequest(torch.device("cpu"), torch.float32)
    masked = RunRequest(torch.device("cpu"), torch.float32, has_masks=True)
    # the plain LSTM stays with torch's oneDNN kernel; its variants go to fused_cpu
    assert choose(make_cell("lstm", 4, 8), cpu)[0].name == "native"
    assert choose(make_cell("lstm", 4, 8), masked)[0].name == "fused_cpu"
    assert choose(make_cell("lstm", 4, 8, layer_norm=True), cpu)[0].name == "fused_cpu"
    assert choose(make_cell("lstm", 4, 8, peephole=True), cpu)[0].name == "fused_cpu"
    assert choose(make_cell("gru", 4, 8, layer_norm=True), cpu)[0].name == "fused_cpu"
    # plain GRU/Elman: measured faster than torch's CPU kernels
    assert choose(make_cell("gru", 4, 8), cpu)[0].name == "fused_cpu"
    assert choose(make_cell("rnn_tanh", 4, 8), cpu)[0].name == "fused_cpu"
    # and an explicit backend still works for the plain LSTM
    assert choose(make_cell("lstm", 4, 8), cpu, "fused_cpu")[0].name == "fused_cpu"


def test_refusals():
    cell = make_cell("lstm", 4, 8)
    assert "CPU" in fused.supports(cell, RunRequest(torch.device("meta"), torch.float32))
    assert "dtype" in fused.supports(cell, RunRequest(torch.device("cpu"), torch.float16))
    assert fused.supports(cell, RunRequest(torch.device("cpu"), torch.bfloat16)) is None
    assert fused.supports(cell, RunRequest(torch.device("cpu"), torch.float32, return_states=True)) is None
    with pytest.raises(ValueError, match="dtype"):
        fused.run(cell, {}, torch.zeros(1, 1, 4, dtype=torch.float16), (torch.zeros(1, 8),) * 2)


@pytest.mark.parametrize("name,options", CONFIGS, ids=lambda v: str(v))
@pytest.mark.parametrize("reverse", [False, True])
def test_return_states_match_reference(name, options, reverse):
    """Per-step states (zero past each length) and their gradients, with masks."""
    cell, params = _make(name, options, 4, 6, torch.float32)
    x, state0, lens, masks = _inputs(cell, 5, 3, torch.float32, True, "both")
    leaves = [x, *state0, *params.values()]
    results = []
    for executor in (get_executor("reference"), fused):
        out, final, states = executor.run(cell, params, x, state0, lens, reverse=reverse,
                                          masks=masks, return_states=True)
        g = torch.Generator().manual_seed(3)
        loss = sum((s * torch.randn(s.shape, generator=g)).sum() for s in (out, *final, *states))
        results.append((states, torch.autograd.grad(loss, leaves, allow_unused=True)))
    (ref_states, ref_grads), (got_states, got_grads) = results
    tol = {"atol": 2e-5, "rtol": 2e-4}
    assert len(got_states) == len(ref_states) == len(cell.state_sizes())
    for a, b in zip(got_states, ref_states, strict=True):
        torch.testing.assert_close(a, b, **tol)
    for a, b in zip(got_grads, ref_grads, strict=True):
        assert (a is None) == (b is None)
        if b is not None:
            torch.testing.assert_close(a, b, **tol)


def test_layer_return_states_runs_fused():
    from rnnkit.layers.recurrent import Recurrent

    torch.manual_seed(0)
    layer = Recurrent("lstm", 3, 5, num_layers=2, layer_norm=True)
    assert all(e.name == "fused_cpu" for row in layer.plan(return_states=True).executors for e in row)
    ref = Recurrent("lstm", 3, 5, num_layers=2, layer_norm=True, backend="reference")
    ref.load_state_dict(layer.state_dict())
    x = torch.randn(6, 2, 3)
    got, want = layer(x, return_states=True), ref(x, return_states=True)
    for a, b in zip(got[2], want[2], strict=True):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=2e-4)


def test_unavailable_extension_falls_back(monkeypatch):
    import rnnkit.executors.fused_cpu as mod

    monkeypatch.setattr(mod, "_extension", lambda: (None, "no C++ compiler found"))
    cell = make_cell("gru", 4, 8, layer_norm=True)
    req = RunRequest(torch.device("cpu"), torch.float32)
    assert mod.FusedCPUExecutor().supports(cell, req) == "no C++ compiler found"
    executor, refused = choose(cell, req)
    assert executor.name == "reference"
    assert refused["fused_cpu"] == "no C++ compiler found"


# ---- streaming step (rnnkit.executors.streaming) --------------------------------------------------
STEP_CONFIGS = [
    ("rnn_tanh", {}), ("rnn_relu", {}), ("rnn_modrelu", {}), ("gru", {}), ("gru", {"layer_norm": True}),
    ("lstm", {}), ("lstm", {"layer_norm": True}), ("lstm", {"peephole": True}),
    ("lstm", {"proj_size": 3}), ("lstm", {"zoneout": (0.2, 0.4)}),
    ("lstm", {"layer_norm": True, "peephole": True, "proj_size": 4, "zoneout": 0.3}),
    ("gru", {"zoneout": 0.25, "recurrent_dropout": 0.3}), ("rnn_tanh", {"residual": True}),
    ("indrnn", {}), ("indrnn", {"nonlinearity": "tanh", "recurrent_max": 0.5}),
    ("indrnn", {"zoneout": 0.2, "recurrent_dropout": 0.3}), ("indrnn", {"residual": True}),
]


# (layers, H): two layers, and one layer with 4H = 68 (row blocks of 8 and a tail); residual acts
# from the second layer on, so only with two
STEP_CASES = [(name, options, layers, H) for name, options in STEP_CONFIGS
              for layers, H in ((2, 7), (1, 17)) if layers == 2 or not options.get("residual")]


@pytest.mark.parametrize("name,options,layers,H", STEP_CASES, ids=lambda v: str(v))
@pytest.mark.parametrize("B", [1, 3, 6])  # 6: the BLAS branch of the step's projections
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fast_step_matches_python_step_and_forward(name, options, layers, H, B, dtype):
    from rnnkit.executors.streaming import fast_step_refusal
    from rnnkit.layers.recurrent import Recurrent

    torch.manual_seed(0)
    I = 2 * H if options.get("residual") else 5
    m = Recurrent(name, I, H, num_layers=layers, dtype=dtype, **options).eval()
    with torch.no_grad():
        for p in m.parameters():  # LN gains/biases away from 1/0, so that they matter
            p.add_(0.3 * torch.randn_like(p))
    T = 4
    x = torch.randn(T, B, I, dtype=dtype)
    tol = {"atol": 2e-5, "rtol": 2e-4} if dtype == torch.float32 else {"atol": 1e-10, "rtol": 1e-9}
    with torch.no_grad():
        out, final = m(x)
        s_fast = s_py = None
        for t in range(T):
            hx = m._prepare_state(s_fast, B, x[t : t + 1], True)
            assert fast_step_refusal(m, x[t], hx) is None
            y_fast, s_fast = m.step(x[t], s_fast)
            hx_py = m._prepare_state(s_py, B, x[t : t + 1], True)
            y_py, s_py = m._python_step(x[t], hx_py)
            s_py = s_py if len(s_py) > 1 else s_py[0]
            torch.testing.assert_close(y_fast, y_py, **tol)
            torch.testing.assert_close(y_fast, out[t], **tol)
        fast_parts = s_fast if isinstance(s_fast, tuple) else (s_fast,)
        final_parts = final if isinstance(final, tuple) else (final,)
        for a, b in zip(fast_parts, final_parts, strict=True):
            torch.testing.assert_close(a, b, **tol)
        y1, _ = m.step(x[0, 0])  # unbatched
        torch.testing.assert_close(y1, out[0, 0], **tol)


@pytest.mark.parametrize("name,options,layers,H", STEP_CASES[::3], ids=lambda v: str(v))
def test_bf16_fast_step_is_the_float32_step_of_the_same_numbers(name, options, layers, H):
    """A bfloat16 module's step runs the C++ step in float32 on float32 copies of its parameters: from
    the same (bf16) state and input it equals the float32 module's step, rounded to bf16; the copies
    follow an in-place update."""
    from rnnkit.executors.streaming import Bfloat16Stepper, fast_step_refusal, stepper
    from rnnkit.layers.recurrent import Recurrent

    torch.manual_seed(0)
    I, B = (2 * H if options.get("residual") else 5), 3
    m16 = Recurrent(name, I, H, num_layers=layers, **options).eval().bfloat16()
    m32 = copy.deepcopy(m16).float()
    x = torch.randn(B, I).bfloat16()
    state = tuple(torch.randn(layers, B, n).bfloat16() for n in m16.cell.state_sizes())
    state = state if len(state) > 1 else state[0]
    with torch.no_grad():
        for _ in range(2):
            assert fast_step_refusal(m16, x, m16._prepare_state(state, B, x[None], True)) is None
            y16, s16 = m16.step(x, state)
            y32, s32 = m32.step(x.float(), tuple(s.float() for s in state) if isinstance(state, tuple)
                                else state.float())
            assert isinstance(stepper(m16), Bfloat16Stepper) and y16.dtype == torch.bfloat16
            torch.testing.assert_close(y16, y32.bfloat16(), rtol=0, atol=0)
            for a, b in zip(s16 if isinstance(s16, tuple) else (s16,), s32 if isinstance(s32, tuple) else (s32,),
                            strict=True):
                torch.testing.assert_close(a, b.bfloat16(), rtol=0, atol=0)
            next(iter(m16.parameters())).mul_(0.5)  # in place: the next step must see it
            next(iter(m32.parameters())).mul_(0.5)


def test_fast_step_sees_parameter_updates_and_conversions():
    """The stepper is cached on the module: in-place updates, load_state_dict, .double() and a
    replaced parameter must all reach it."""
    from rnnkit.layers.recurrent import Recurrent

    torch.manual_seed(0)
    m = Recurrent("lstm", 5, 6, num_layers=2, layer_norm=True).eval()
    x = torch.randn(3, 5)

    def check(module, inp):
        hx = module._prepare_state(None, inp.shape[0], inp.unsqueeze(0), True)
        with torch.no_grad():
            y_fast, _ = module.step(inp)
            y_py, _ = module._python_step(inp, hx)
        torch.testing.assert_close(y_fast, y_py, atol=1e-5, rtol=1e-4)
        return y_fast

    first = check(m, x)
    with torch.no_grad():
        m.weight_hh_l1.mul_(2.0)  # in place, as an optimiser does
        m.layer_norm_c_weight_l0.add_(0.5)
    assert not torch.allclose(check(m, x), first)
    m.load_state_dict(Recurrent("lstm", 5, 6, num_layers=2, layer_norm=True).state_dict())
    check(m, x)
    m.bias_ih_l0 = torch.nn.Parameter(torch.randn(24))  # a new object
    check(m, x)
    with torch.inference_mode():  # in-place inside inference mode still bumps the version
        m.weight_ih_l0.add_(0.25)
        m.weight_hh_l0.mul_(-1.0)
    check(m, x)
    m.weight_hh_l1.data = torch.randn(24, 6)  # same object, new storage
    check(m, x)
    m.double()  # the parameters keep their identity, their data changes
    check(m, x.double())


@pytest.mark.parametrize("I,H", [(16, 8), (37, 20), (3, 33)])  # row blocks of 8 and tails
@pytest.mark.parametrize("B", [1, 4])
def test_fast_step_follows_weight_updates_between_steps(I, H, B):
    """A stream whose weights change between two of its steps (an optimiser step, in place) reads
    the new values, also for a module made under inference mode (inference-tensor weights)."""
    from rnnkit.layers.recurrent import Recurrent

    torch.manual_seed(1)
    for inference_weights in (False, True):
        if inference_weights:
            with torch.inference_mode():
                m = Recurrent("lstm", I, H, num_layers=2).eval()
        else:
            m = Recurrent("lstm", I, H, num_layers=2).eval()
        x = torch.randn(5, B, I)
        state = None
        with torch.inference_mode():
            for t in range(5):
                hx = m._prepare_state(state, B, x[t : t + 1], True)
                y, state = m.step(x[t], state)
                y_py, _ = m._python_step(x[t], hx)
                torch.testing.assert_close(y, y_py, atol=2e-5, rtol=2e-4)
                m.weight_ih_l0.mul_(0.9)  # in place, as an optimiser does
                m.weight_hh_l1.add_(0.05)


def test_fast_step_only_without_autograd():
    from rnnkit.executors.streaming import fast_step_refusal
    from rnnkit.layers.recurrent import Recurrent

    m = Recurrent("lstm", 3, 4, layer_norm=True)
    x = torch.randn(2, 3)
    hx = m._prepare_state(None, 2, x.unsqueeze(0), True)
    assert "gradients" in fast_step_refusal(m, x, hx)
    y, _ = m.step(x)  # the Python path: differentiable
    y.sum().backward()
    assert m.weight_hh_l0.grad is not None
    with torch.no_grad():
        assert fast_step_refusal(m, x, hx) is None
    m.requires_grad_(False)
    assert fast_step_refusal(m, x, hx) is None
    assert "dtype" in fast_step_refusal(m, x.double(), hx)


def test_stream_lane_rechecks_what_can_change():
    """A stream that passes back the state it was given takes a short path (``_stream_lane``): a
    reset in place, a replaced parameter, another backend, grad mode, training mode and another
    input shape must all still be honoured mid-stream; the module stays copyable and picklable."""
    import copy
    import io

    from rnnkit.layers.recurrent import Recurrent

    torch.manual_seed(0)
    m = Recurrent("lstm", 3, 4, num_layers=2, zoneout=0.2).eval()
    x = torch.randn(8, 2, 3)

    def python_step(inp, state):
        hx = m._prepare_state(state, inp.shape[0], inp.unsqueeze(0), True)
        return m._python_step(inp, hx)[0]

    with torch.no_grad():
        s = None
        for t in range(3):
            y, s = m.step(x[t], s)
        assert m.__dict__.get("_stream_lane") is not None
        for c in s:
            c.zero_()  # a reset in place is read by the next step
        y, s = m.step(x[3], s)
        torch.testing.assert_close(y, m.step(x[3])[0])
        y, s = m.step(x[4], s)  # the lane again, after the fresh stream above replaced it
        before = tuple(c.clone() for c in s)
        m.weight_hh_l1 = torch.nn.Parameter(torch.randn(16, 4))  # replaced mid-stream
        assert "_stream_lane" not in m.__dict__
        y, s = m.step(x[5], s)
        torch.testing.assert_close(y, python_step(x[5], before), atol=1e-5, rtol=1e-4)
        m.backend = "reference"  # the Python step, same numbers
        before = tuple(c.clone() for c in s)
        y_ref, _ = m.step(x[6], s)
        m.backend = "auto"
        y_fast, _ = m.step(x[6], before)
        torch.testing.assert_close(y_ref, y_fast, atol=1e-5, rtol=1e-4)
        with pytest.raises(RuntimeError, match="Expected hidden"):
            m.step(x[7, :1], s)  # another batch size with the lane's state: checked, refused
    y, s = m.step(x[7], s)  # grad mode on, parameters need grad: the differentiable path
    assert y.requires_grad
    with torch.no_grad():
        _, s = m.step(x[7], tuple(c.detach() for c in s))
        m.train()
        with pytest.raises(ValueError, match=r"eval\(\)"):
            m.step(x[0], s)  # zoneout in training mode, even mid-stream
        m.eval()
        m.step(x[0], s)
    copy.deepcopy(m)
    torch.save(m, io.BytesIO())


def test_stream_lane_sees_swapped_and_noncontiguous_parameters():
    """The lane must not reuse a stepper whose tensors are no longer the module's parameters:
    torch.func.functional_call swaps them without register_parameter, and a non-contiguous
    parameter is bound as a contiguous copy (so in-place updates must go through the checks)."""
    import copy
    import pickle

    from torch.func import functional_call

    from rnnkit.layers.recurrent import Recurrent

    torch.manual_seed(0)
    m = Recurrent("lstm", 3, 4).eval()
    x = torch.randn(2, 3)

    class Stepping(torch.nn.Module):
        def __init__(self, rnn):
            super().__init__()
            self.rnn = rnn

        def forward(self, inp, state):
            return self.rnn.step(inp, state)

    wrapper = Stepping(m)
    new = {k: torch.randn_like(v) for k, v in wrapper.named_parameters()}
    other = Stepping(copy.deepcopy(m))
    with torch.no_grad():
        other.load_state_dict(new)
        _, s = m.step(x)
        _, s = m.step(x, s)  # the lane is set
        y_swapped, _ = functional_call(wrapper, new, (x, s))
        y_expected, _ = other(x, tuple(c.clone() for c in s))
        torch.testing.assert_close(y_swapped, y_expected)
        y_after, _ = m.step(x, s)  # back on the module's own weights
        torch.testing.assert_close(y_after, m.step(x, tuple(c.clone() for c in s))[0])

        m.weight_hh_l0 = torch.nn.Parameter(torch.randn(4, 16).t())  # non-contiguous
        _, s = m.step(x)
        _, s = m.step(x, s)
        m.weight_hh_l0.mul_(0.0)
        y, _ = m.step(x, s)
        torch.testing.assert_close(y, m.step(x, tuple(c.clone() for c in s))[0])
    m._compiled_call_impl = lambda *a: None  # as Module.compile() leaves it: not pickled
    pickle.dumps(m)


def test_modrelu_at_zero_preactivation_matches_reference():
    """sign(0) = 0: with no biases, a zero input and a zero state every unit stays 0 (and gets no
    threshold gradient), in the fused kernels and the C++ step as in the reference."""
    from rnnkit.layers.recurrent import Recurrent

    torch.manual_seed(0)
    fused = Recurrent("rnn_modrelu", 3, 6, bias=False, dtype=torch.float64)
    with torch.no_grad():
        fused.modrelu_bias_l0.copy_(torch.linspace(-0.5, 0.5, 6, dtype=torch.float64))
    ref = Recurrent("rnn_modrelu", 3, 6, bias=False, dtype=torch.float64, backend="reference")
    ref.load_state_dict(fused.state_dict())
    x = torch.zeros(2, 1, 3, dtype=torch.float64)
    grads = []
    for m in (fused, ref):
        y, _ = m(x)
        assert (y == 0).all()
        y.sum().backward()
        grads.append(m.modrelu_bias_l0.grad)
    torch.testing.assert_close(grads[0], grads[1])
    with torch.no_grad():
        y, _ = fused.eval().step(x[0])
    assert (y == 0).all()


# ---- which kernel runs a cell (rnnkit.executors.kernel_families) --------------------------------
def test_subclass_that_changes_equations_gets_no_inherited_kernel():
    """A subclass inheriting kernel_family() may compute something else: no kernel runs it (auto
    falls back to the reference loop, whose answer is the subclass's own), until it declares one."""
    from dataclasses import dataclass

    from rnnkit.cells.elman import ElmanSpec

    @dataclass(frozen=True)
    class DoubledElman(ElmanSpec):  # h = tanh(2 (x W_ih^T + h W_hh^T + b)): not the Elman kernel
        def gates(self, params, gx_t, state, recurrent_mask=None):
            h = state[0] if recurrent_mask is None else state[0] * recurrent_mask
            pre = gx_t + torch.nn.functional.linear(h, params["weight_hh"], params.get("bias_hh"))
            return {"h": torch.tanh(2 * pre)}

    @dataclass(frozen=True)
    class DeclaredElman(ElmanSpec):  # declares that its equations are the elman_tanh kernel's
        def kernel_family(self):
            return "elman_tanh"

    @dataclass(frozen=True)
    class UnknownFamily(ElmanSpec):
        def kernel_family(self):
            return "no_such_kernel"

    request = RunRequest(torch.device("cpu"), torch.float32)
    assert "no fused CPU kernel" in fused.supports(DoubledElman(3, 4), request)
    assert choose(DoubledElman(3, 4), request)[0].name == "reference"
    assert fused.supports(DeclaredElman(3, 4), request) is None
    assert "no 'no_such_kernel' kernel" in fused.supports(UnknownFamily(3, 4), request)


def test_kernel_takes_parameters_by_name_and_refuses_unknown_names():
    from rnnkit.executors.fused_cpu import _extension

    module, _ = _extension()
    gx, h0 = torch.randn(2, 1, 3), torch.zeros(1, 3)
    params = {"weight_hh": torch.randn(3, 3), "bias_hh": torch.randn(3)}
    y = module.forward("elman_tanh", {}, gx, h0, None, params, None, None, None, None, False, False,
                       False)[0]
    torch.testing.assert_close(y[0], torch.tanh(gx[0] + params["bias_hh"]))
    with pytest.raises(RuntimeError, match="no kernel parameter named 'weight_peephole_x'"):
        module.forward("elman_tanh", {}, gx, h0, None, {**params, "weight_peephole_x": h0}, None,
                       None, None, None, False, False, False)
    with pytest.raises(RuntimeError, match="no kernel family 'nope'"):
        module.forward("nope", {}, gx, h0, None, params, None, None, None, None, False, False, False)
    assert module.families()["indrnn"] == {"states": 1, "raw_input": 0}
    assert module.families()["lstm"] == {"states": 2, "raw_input": 1}


def test_indrnn_layer_runs_fused_and_matches_reference():
    """Recurrent('indrnn') with auto dispatch: two bidirectional layers, clamped u, zoneout, lengths
    and an initial state run on fused_cpu; outputs and every gradient equal the reference's."""
    from rnnkit.layers.recurrent import Recurrent

    torch.manual_seed(0)
    options = {"num_layers": 2, "bidirectional": True, "recurrent_max": 0.7, "zoneout": 0.2,
               "nonlinearity": "tanh"}
    layer = Recurrent("indrnn", 5, 6, **options)
    assert all(e.name == "fused_cpu" for row in layer.plan().executors for e in row)
    ref = Recurrent("indrnn", 5, 6, backend="reference", **options)
    with torch.no_grad():
        layer.weight_hh_l0.mul_(2)  # some |u| above recurrent_max: the clamp acts
    ref.load_state_dict(layer.state_dict())
    x = torch.randn(7, 3, 5, requires_grad=True)
    h0 = torch.randn(4, 3, 6, requires_grad=True)
    lengths = torch.tensor([7, 3, 5])
    layer.eval()
    ref.eval()
    results = []
    for m in (layer, ref):
        y, h = m(x, h0, lengths=lengths)
        loss = (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum() + h.square().sum()
        results.append((y, h, *torch.autograd.grad(loss, [x, h0, *m.parameters()])))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=2e-4)
