"""torch.func (functorch) transforms over rnnkit modules: the same numbers as torch.nn / the
reference executor, or an error that names the transform.

- ``grad`` / ``vjp`` through ``functional_call``: the kernels' autograd Functions use the
  ``setup_context`` form; inputs that ``torch.func`` tracks without ``requires_grad`` still get the
  differentiable path (they once got a zero gradient).
- ``vmap``: the compiled kernels have no batching rule, so auto runs the layer on the reference
  executor (torch.nn's own LSTM has no batching rule at all); a named compiled backend raises.
- ``jacrev`` and ``vmap(grad(...))`` (per-sample gradients): batched cotangents take the
  recomputing backward.
"""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call, grad, jacrev, stack_module_state, vjp, vmap

import rnnkit
from rnnkit.errors import BackendUnavailable

F64 = torch.float64

MODULES = [  # (make rnnkit's, torch.nn's counterpart or None)
    (lambda **k: rnnkit.LSTM(3, 5, 2, **k), lambda: torch.nn.LSTM(3, 5, 2)),
    (lambda **k: rnnkit.GRU(3, 5, 2, bidirectional=True, **k), lambda: torch.nn.GRU(3, 5, 2, bidirectional=True)),
    (lambda **k: rnnkit.RNN(3, 5, 1, **k), lambda: torch.nn.RNN(3, 5, 1)),
    (lambda **k: rnnkit.LSTM(3, 5, 1, layer_norm=True, peephole=True, **k), None),
    (lambda **k: rnnkit.Recurrent("mingru", 3, 5, 2, **k), None),
]
IDS = ["lstm", "bigru", "rnn", "lstm-ln-peephole", "mingru"]


def _pair(index):
    """rnnkit's module on auto, and the module that defines the expected numbers: torch.nn's
    counterpart, or rnnkit's reference executor with the same weights."""
    make, make_torch = MODULES[index]
    torch.manual_seed(index)
    ours = make().double()
    expected = make_torch().double() if make_torch else make(backend="reference").double()
    expected.load_state_dict(ours.state_dict())
    return ours, expected


def _loss(module, params, x):
    y, _ = functional_call(module, params, (x,))
    return (y * torch.linspace(-1, 1, y.shape[-1], dtype=y.dtype)).pow(2).sum()


@pytest.mark.parametrize("index", range(len(MODULES)), ids=IDS)
def test_func_grad_of_parameters_and_input(index):
    ours, expected = _pair(index)
    x = torch.randn(6, 4, 3, dtype=F64)
    for detached in (False, True):  # torch.func needs no requires_grad on what it differentiates
        p_ours = {k: v.detach() if detached else v for k, v in ours.named_parameters()}
        p_exp = {k: v.detach() if detached else v for k, v in expected.named_parameters()}
        g_ours = grad(_loss, argnums=(1, 2))(ours, p_ours, x)
        g_exp = grad(_loss, argnums=(1, 2))(expected, p_exp, x)
        torch.testing.assert_close(g_ours[1], g_exp[1], rtol=0, atol=1e-10)
        for k in g_exp[0]:
            torch.testing.assert_close(g_ours[0][k], g_exp[0][k], rtol=0, atol=1e-10)


@pytest.mark.parametrize("index", range(len(MODULES)), ids=IDS)
def test_vjp_and_jacrev_of_the_input(index):
    ours, expected = _pair(index)
    x = torch.randn(3, 2, 3, dtype=F64)
    y, pull = vjp(lambda t: ours(t)[0], x)
    _, pull_exp = vjp(lambda t: expected(t)[0], x)
    cotangent = torch.randn_like(y)
    torch.testing.assert_close(pull(cotangent)[0], pull_exp(cotangent)[0], rtol=0, atol=1e-10)
    torch.testing.assert_close(jacrev(lambda t: ours(t)[0])(x), jacrev(lambda t: expected(t)[0])(x),
                               rtol=0, atol=1e-10)


@pytest.mark.parametrize("index", range(len(MODULES)), ids=IDS)
def test_vmap_runs_on_the_reference_executor_and_matches_a_loop(index):
    ours, _ = _pair(index)
    xs = torch.randn(3, 6, 2, 3, dtype=F64)
    batched = vmap(lambda t: ours(t)[0])(xs)
    torch.testing.assert_close(batched, torch.stack([ours(t)[0] for t in xs]), rtol=0, atol=1e-12)


def test_vmap_on_a_named_compiled_backend_raises_naming_vmap():
    module = rnnkit.LSTM(3, 5, backend="fused_cpu").double()
    with pytest.raises(BackendUnavailable, match=r"torch\.func\.vmap.*reference"):
        vmap(lambda t: module(t)[0])(torch.randn(2, 4, 1, 3, dtype=F64))


@pytest.mark.parametrize("index", [0, 3, 4], ids=["lstm", "lstm-ln-peephole", "mingru"])
def test_per_sample_gradients(index):
    ours, _ = _pair(index)
    params = {k: v.detach() for k, v in ours.named_parameters()}
    xs = torch.randn(5, 4, 3, dtype=F64)  # (T, B, I): one sample per column

    def loss(p, sample):
        return _loss(ours, p, sample.unsqueeze(1))

    batched = vmap(grad(loss), in_dims=(None, 1))(params, xs)
    for b in range(xs.shape[1]):
        one = grad(loss)(params, xs[:, b])
        for k in params:
            torch.testing.assert_close(batched[k][b], one[k], rtol=0, atol=1e-10)


def test_model_ensemble_over_stacked_parameters():
    torch.manual_seed(0)
    members = [rnnkit.GRU(3, 5, 2).double() for _ in range(3)]
    stacked, _ = stack_module_state(members)
    x = torch.randn(6, 4, 3, dtype=F64)
    out = vmap(lambda p: functional_call(members[0], p, (x,))[0])(stacked)
    for i, member in enumerate(members):
        torch.testing.assert_close(out[i], member(x)[0], rtol=0, atol=1e-12)


def test_a_tensor_escaped_from_a_finished_transform_still_runs():
    """torch's ``apply`` unwraps tensors that outlived their ``torch.func`` transform; so does the
    kernels' faster one."""
    module = rnnkit.GRU(3, 5, backend="fused_cpu").double()
    x = torch.randn(4, 2, 3, dtype=F64)
    escaped = []
    vjp(lambda t: escaped.append(t) or t.sum(), x)
    torch.testing.assert_close(module(escaped[0])[0], module(x)[0])


JVP_MODULES = [
    lambda **k: rnnkit.GRU(3, 5, 2, **k),
    lambda **k: rnnkit.LSTM(3, 5, 1, layer_norm=True, proj_size=2, **k),
    lambda **k: rnnkit.Recurrent("minlstm", 3, 5, 2, **k),
    lambda **k: rnnkit.RNN(3, 5, 1, bidirectional=True, **k),
]


@pytest.mark.parametrize("make", JVP_MODULES, ids=["gru", "lstm-ln-proj", "minlstm", "birnn"])
def test_forward_mode_ad_matches_the_reference(make):
    """torch.func.jvp, torch.autograd.forward_ad and jacfwd (vmap over jvp: the kernels' vmap rule)
    on the compiled kernels, against the reference executor."""
    import torch.autograd.forward_ad as fwAD

    torch.manual_seed(0)
    ours, reference = make().double(), make(backend="reference").double()
    reference.load_state_dict(ours.state_dict())
    x = torch.randn(4, 2, 3, dtype=F64)
    tangent = torch.randn_like(x)
    for module_pair in [(ours, reference)]:
        a, b = (torch.func.jvp(lambda u, m=m: m(u)[0], (x,), (tangent,))[1] for m in module_pair)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
        duals = []
        for m in module_pair:
            with fwAD.dual_level():
                duals.append(fwAD.unpack_dual(m(fwAD.make_dual(x, tangent))[0]).tangent)
        torch.testing.assert_close(duals[0], duals[1], rtol=0, atol=1e-12)
        a, b = (torch.func.jacfwd(lambda u, m=m: m(u)[0])(x[:, :1]) for m in module_pair)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    params = {k: v.detach() for k, v in ours.named_parameters()}
    directions = {k: torch.randn_like(v) for k, v in params.items()}
    a, b = (torch.func.jvp(lambda q, m=m: functional_call(m, q, (x,))[0], (params,), (directions,))[1]
            for m in (ours, reference))
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_named_compiled_backend_under_jacfwd_uses_the_vmap_rule():
    """jacfwd batches only the tangents, which the dispatcher cannot see: the kernels' Function runs
    once per batch entry (KernelFunction.vmap)."""
    ours = rnnkit.GRU(3, 5, backend="fused_cpu").double()
    reference = rnnkit.GRU(3, 5, backend="reference").double()
    reference.load_state_dict(ours.state_dict())
    x = torch.randn(4, 1, 3, dtype=F64)
    torch.testing.assert_close(torch.func.jacfwd(lambda u: ours(u)[0])(x),
                               torch.func.jacfwd(lambda u: reference(u)[0])(x), rtol=0, atol=1e-12)
