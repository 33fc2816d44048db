"""float64 gradcheck of every cell option under the reference executor: through the cell's step,
through ``Recurrent`` (lengths, bidirectional, initial state, every parameter) and through the
reference executor with fixed regulariser masks."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

from rnnkit import Recurrent
from rnnkit.cells import make_cell
from rnnkit.executors import StepMasks
from rnnkit.executors.reference import ReferenceExecutor

F64 = torch.float64


CELL_OPTIONS = [
    ("rnn_tanh", {}),
    ("rnn_relu", {}),
    ("rnn_modrelu", {}),
    ("lstm", {}),
    ("lstm", {"proj_size": 2}),
    ("lstm", {"peephole": True}),
    ("lstm", {"layer_norm": True}),
    ("lstm", {"peephole": True, "layer_norm": True, "proj_size": 2}),
    ("gru", {}),
    ("gru", {"layer_norm": True}),
]


def case_id(case):
    name, options = case
    return "-".join([name, *sorted(k for k, v in options.items() if v)])


def leaf_params(cell, seed=0, scale=0.6):
    g = torch.Generator().manual_seed(seed)
    params = {}
    for name, shape in cell.param_shapes().items():
        p = torch.randn(shape, generator=g, dtype=F64) * scale
        if name.startswith("layer_norm_") and name.endswith("_weight"):
            p = p + 1.0  # gains around 1
        params[name] = p.requires_grad_()
    return params


def random_state(cell, B, seed=1):
    g = torch.Generator().manual_seed(seed)
    return tuple(
        torch.randn(B, n, generator=g, dtype=F64).requires_grad_() for n in cell.state_sizes()
    )


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("case", CELL_OPTIONS, ids=case_id)
def test_cell_step_gradcheck(case, bias):
    name, options = case
    I, H, B = 3, 4, 2
    cell = make_cell(name, I, H, bias, **options)
    params = leaf_params(cell)
    names = list(params)
    x = torch.randn(B, I, dtype=F64, generator=torch.Generator().manual_seed(2)).requires_grad_()
    state = random_state(cell, B)
    k = len(state)

    def fn(x, *rest):
        st, pv = rest[:k], rest[k:]
        p = dict(zip(names, pv, strict=True))
        return cell.step(p, cell.project_input(p, x), tuple(st))

    assert gradcheck(fn, (x, *state, *params.values()), eps=1e-6, atol=1e-7)


def test_cell_step_gradcheck_with_recurrent_mask():
    """The recurrent mask is a constant; gradients flow through the masked h_{t-1}."""
    I, H, B = 3, 4, 2
    for name in ("lstm", "gru", "rnn_tanh"):
        cell = make_cell(name, I, H)
        params = leaf_params(cell, seed=3)
        names = list(params)
        mask = torch.tensor([[2.0, 0.0, 2.0, 2.0], [0.0, 2.0, 0.0, 2.0]], dtype=F64)
        x = torch.randn(B, I, dtype=F64).requires_grad_()
        state = random_state(cell, B)
        k = len(state)

        def fn(x, *rest, cell=cell, names=names, mask=mask, k=k):
            p = dict(zip(names, rest[k:], strict=True))
            return cell.step(p, cell.project_input(p, x), tuple(rest[:k]), mask)

        assert gradcheck(fn, (x, *state, *params.values()), eps=1e-6, atol=1e-7), name


# ---- through Recurrent ---------------------------------------------------------------------
def module_fn(m, lengths, n_state, return_states=False):
    names = [n for n, _ in m.named_parameters()]

    def fn(x, *rest):
        state, values = rest[:n_state], rest[n_state:]
        state = tuple(state) if n_state > 1 else state[0]
        result = torch.func.functional_call(
            m, dict(zip(names, values, strict=True)), (x, state),
            {"lengths": lengths, "return_states": return_states},
        )
        out, final = result[0], result[1]
        finals = final if isinstance(final, tuple) else (final,)
        extra = tuple(result[2]) if return_states else ()
        return (out, *finals, *extra)

    return fn


def module_inputs(m, T, B, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, B, m.input_size, generator=g, dtype=F64).requires_grad_()
    LD = m.num_layers * m.num_directions
    state = tuple(
        torch.randn(LD, B, n, generator=g, dtype=F64).requires_grad_()
        for n in m.cell.state_sizes()
    )
    params = [p.detach().clone().requires_grad_() for p in m.parameters()]
    return x, state, params


def make_module(name, options, *, num_layers=1, bias=True, **kwargs):
    torch.manual_seed(0)
    m = Recurrent(
        name, 3, 3, num_layers, bias=bias, bidirectional=True, backend="reference", dtype=F64,
        **options, **kwargs,
    )
    with torch.no_grad():  # layer-norm gains away from 1 and biases away from 0
        for n, p in m.named_parameters():
            if n.startswith("layer_norm_"):
                p.add_(torch.randn_like(p) * 0.3)
    return m


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("case", CELL_OPTIONS, ids=case_id)
def test_recurrent_gradcheck_lengths_bidirectional(case, bias):
    name, options = case
    options = dict(options)
    if "proj_size" in options:
        options["proj_size"] = 1
    m = make_module(name, options, bias=bias)
    T, B = 4, 3
    lengths = torch.tensor([4, 2, 3])
    x, state, params = module_inputs(m, T, B)
    fn = module_fn(m, lengths, len(state))
    assert gradcheck(fn, (x, *state, *params), eps=1e-6, atol=1e-7, fast_mode=True)


@pytest.mark.parametrize("name", ["lstm", "gru", "rnn_tanh"])
def test_recurrent_gradcheck_two_layers(name):
    m = make_module(name, {}, num_layers=2)
    x, state, params = module_inputs(m, 4, 2)
    fn = module_fn(m, torch.tensor([3, 4]), len(state))
    assert gradcheck(fn, (x, *state, *params), eps=1e-6, atol=1e-7, fast_mode=True)


def test_recurrent_gradcheck_return_states():
    m = make_module("lstm", {"peephole": True})
    x, state, params = module_inputs(m, 4, 2)
    fn = module_fn(m, torch.tensor([2, 4]), len(state), return_states=True)
    assert gradcheck(fn, (x, *state, *params), eps=1e-6, atol=1e-7, fast_mode=True)


@pytest.mark.parametrize("case", [("lstm", {}), ("gru", {}), ("rnn_tanh", {})], ids=case_id)
def test_recurrent_gradcheck_zoneout_eval(case):
    name, options = case
    zoneout = (0.3, 0.6) if name == "lstm" else 0.4
    m = make_module(name, options, num_layers=2, zoneout=zoneout).eval()
    x, state, params = module_inputs(m, 4, 2)
    fn = module_fn(m, torch.tensor([4, 3]), len(state))
    assert gradcheck(fn, (x, *state, *params), eps=1e-6, atol=1e-7, fast_mode=True)


@pytest.mark.slow
@pytest.mark.parametrize("case", CELL_OPTIONS, ids=case_id)
def test_recurrent_gradcheck_full_jacobian(case):
    name, options = case
    options = dict(options)
    if "proj_size" in options:
        options["proj_size"] = 1
    m = make_module(name, options, num_layers=2)
    x, state, params = module_inputs(m, 3, 2)
    fn = module_fn(m, torch.tensor([3, 2]), len(state))
    assert gradcheck(fn, (x, *state, *params), eps=1e-6, atol=1e-7)


# ---- the reference executor with fixed masks -------------------------------------------------
def executor_fn(cell, names, lengths, reverse, masks, k):
    executor = ReferenceExecutor()

    def fn(x, *rest):
        p = dict(zip(names, rest[k:], strict=True))
        res = executor.run(cell, p, x, tuple(rest[:k]), lengths, reverse=reverse, masks=masks)
        return (res.outputs, *res.final_state)

    return fn


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("case", CELL_OPTIONS, ids=case_id)
def test_reference_executor_gradcheck_fixed_recurrent_dropout_mask(case, reverse):
    name, options = case
    I, H, T, B = 3, 4, 4, 3
    cell = make_cell(name, I, H, **options)
    params = leaf_params(cell, seed=4)
    g = torch.Generator().manual_seed(5)
    mask = torch.bernoulli(torch.full((B, cell.output_size), 0.6, dtype=F64), generator=g) / 0.6
    assert (mask == 0).any()
    x = torch.randn(T, B, I, generator=g, dtype=F64).requires_grad_()
    state = random_state(cell, B)
    fn = executor_fn(
        cell, list(params), torch.tensor([4, 2, 3]), reverse, StepMasks(recurrent=mask), len(state)
    )
    assert gradcheck(fn, (x, *state, *params.values()), eps=1e-6, atol=1e-7, fast_mode=True)


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("name", ["lstm", "gru", "rnn_relu"])
def test_reference_executor_gradcheck_zoneout(name, training):
    """Zoneout weights as evaluation passes them (the scalar p) and as training does (fixed
    Bernoulli draws per step), together with a recurrent mask."""
    I, H, T, B = 3, 4, 4, 2
    cell = make_cell(name, I, H)
    params = leaf_params(cell, seed=6)
    g = torch.Generator().manual_seed(7)
    if training:
        zoneout = tuple(
            torch.bernoulli(torch.full((T, B, n), 0.5, dtype=F64), generator=g)
            for n in cell.state_sizes()
        )
    else:
        zoneout = tuple(torch.tensor(p, dtype=F64) for p in (0.3, 0.5)[: len(cell.state_sizes())])
    mask = torch.bernoulli(torch.full((B, cell.output_size), 0.7, dtype=F64), generator=g) / 0.7
    x = torch.randn(T, B, I, generator=g, dtype=F64).requires_grad_()
    state = random_state(cell, B)
    masks = StepMasks(recurrent=mask, zoneout=zoneout)
    fn = executor_fn(cell, list(params), torch.tensor([4, 3]), True, masks, len(state))
    assert gradcheck(fn, (x, *state, *params.values()), eps=1e-6, atol=1e-7)
