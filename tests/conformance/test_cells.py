"""Conformance of every registered cell family (see ``cases.py``): each executor against the reference
executor (outputs, final states and every gradient, with lengths, reverse, an initial state and the
masks the executor takes), float64 gradcheck of the reference, ``Recurrent.step()`` == forward, and a
save/load round trip of a bidirectional two-layer ``Recurrent``."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

import rnnkit
from rnnkit.cells import make_cell
from rnnkit.executors import RunRequest, StepMasks, get_executor

from .cases import F64, case_id, executor_cases, family_cases, random_params

T, B, I, H = 5, 3, 3, 4
LENGTHS = torch.tensor([5, 2, 4])


def _inputs(cell, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, B, I, generator=g, dtype=F64).requires_grad_()
    state0 = tuple(torch.randn(B, n, generator=g, dtype=F64).requires_grad_() for n in cell.state_sizes())
    return x, state0


def _masks(cell, executor, x):
    if executor.supports(cell, RunRequest(x.device, F64, has_masks=True)) is not None:
        return None
    g = torch.Generator().manual_seed(2)
    zoneout = tuple(torch.full((T, B, n), 0.3, dtype=F64) for n in cell.state_sizes())
    recurrent = (torch.rand(B, cell.output_size, generator=g, dtype=F64) * 2
                 if "weight_hh" in cell.param_shapes() else None)
    return StepMasks(recurrent, zoneout)


def _run_and_grads(executor, cell, params, x, state0, lengths, reverse, masks):
    run = executor.run(cell, params, x, state0, lengths, reverse=reverse, masks=masks)
    outs = (run.outputs, *run.final_state)
    g = torch.Generator().manual_seed(3)
    loss = sum((o * torch.randn(o.shape, generator=g, dtype=F64)).sum() for o in outs)
    grads = torch.autograd.grad(loss, [x, *state0, *params.values()], allow_unused=True)
    return outs, grads


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("case", executor_cases(), ids=lambda c: case_id(*c[:3]))
def test_executor_matches_reference(case, lengths, reverse):
    name, options, backend, refusal = case
    if refusal is not None:
        pytest.skip(f"{backend} does not run {case_id(name, options)}: {refusal}")
    cell = make_cell(name, I, H, **options)
    executor, reference = get_executor(backend), get_executor("reference")
    params = random_params(cell)
    x, state0 = _inputs(cell)
    masks = _masks(cell, executor, x)
    ours, our_grads = _run_and_grads(executor, cell, params, x, state0, lengths, reverse, masks)
    theirs, their_grads = _run_and_grads(reference, cell, params, x, state0, lengths, reverse, masks)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
    for a, b, what in zip(our_grads, their_grads, ["x", *(["state"] * len(state0)), *params], strict=True):
        assert (a is None) == (b is None), what
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10, msg=lambda m, w=what: f"d/d{w}: {m}")


@pytest.mark.parametrize("case", family_cases(), ids=lambda c: case_id(*c))
def test_reference_gradcheck(case):
    name, options = case
    cell = make_cell(name, 2, 3, **options)
    params = random_params(cell)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 2, 2, generator=g, dtype=F64).requires_grad_()
    state0 = tuple(torch.randn(2, n, generator=g, dtype=F64).requires_grad_() for n in cell.state_sizes())
    reference, names, k = get_executor("reference"), list(params), len(state0)

    def fn(x, *rest):
        run = reference.run(cell, dict(zip(names, rest[k:], strict=True)), x, tuple(rest[:k]),
                            torch.tensor([3, 2]), reverse=True)
        return run.outputs, *run.final_state

    assert gradcheck(fn, (x, *state0, *params.values()), eps=1e-6, atol=1e-6)


def _module(name, options, **kw):
    torch.manual_seed(0)
    return rnnkit.Recurrent(name, I, H, 2, dtype=F64, **options, **kw)


@pytest.mark.parametrize("case", family_cases(), ids=lambda c: case_id(*c))
def test_step_equals_forward(case):
    name, options = case
    m = _module(name, options).eval()
    x = torch.randn(T, B, I, dtype=F64)
    y, final = m(x)
    state = None
    with torch.no_grad():
        for t in range(T):
            y_t, state = m.step(x[t], state)
            torch.testing.assert_close(y_t, y[t], rtol=1e-9, atol=1e-10)
    for a, b in zip(state if isinstance(state, tuple) else (state,),
                    final if isinstance(final, tuple) else (final,), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("case", family_cases(), ids=lambda c: case_id(*c))
def test_save_load_round_trip(case, tmp_path):
    name, options = case
    m = _module(name, options, bidirectional=True)
    rnnkit.save(m, tmp_path / "model")
    loaded = rnnkit.load(tmp_path / "model")
    assert repr(loaded) == repr(m)
    x = torch.randn(T, B, I, dtype=F64)
    torch.testing.assert_close(loaded(x)[0], m(x)[0], rtol=0, atol=0)


def test_an_unregistered_spec_class_is_a_cell():
    """Recurrent(SpecClass, ...) with options that depend on the sizes (proj_size < hidden_size), its
    repr and plan: a subclass that does not declare kernels runs on the reference executor."""
    import dataclasses
    from typing import ClassVar

    from rnnkit.cells import LSTMSpec

    @dataclasses.dataclass(frozen=True)
    class MyLSTM(LSTMSpec):
        name: ClassVar[str] = "my_lstm_test"

    m = rnnkit.Recurrent(MyLSTM, I, H, proj_size=2, peephole=True)
    assert repr(m) == "Recurrent('my_lstm_test', 3, 4, proj_size=2, peephole=True)"
    assert {e.name for per in m.plan().executors for e in per} == {"reference"}
    assert m(torch.randn(T, B, I))[0].shape == (T, B, 2)
