"""Second-order gradients through every executor (double backward), and torch.func.

The fused kernels' hand-written backward cannot be differentiated; when autograd records a backward
(``create_graph=True``) the executors recompute with the reference loop
(:mod:`rnnkit.executors.recompute`). Checked here: a WGAN-GP gradient penalty against torch.nn
(the case that was silently wrong), float64 gradgradcheck for every cell family and option on every
executor that runs it (the cases come from the cell registry), and ``torch.func.grad``.
"""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

import rnnkit
from conformance.cases import random_params
from rnnkit.cells import make_cell
from rnnkit.cells.registry import cell_names, option_examples
from rnnkit.executors import RunRequest, StepMasks, backend_names, get_executor

F64 = torch.float64


def runnable_executors(cell) -> list[str]:
    request = RunRequest(torch.device("cpu"), F64)
    return [n for n in backend_names() if get_executor(n).supports(cell, request) is None]


CASES = [
    (name, options, backend)
    for name in cell_names()
    for options in option_examples(name)
    for backend in runnable_executors(make_cell(name, 2, 3, **options))
]


def _case_id(case):
    name, options, backend = case
    return "-".join([name, *(k if v is True else f"{k}={v}" for k, v in sorted(options.items())), backend])


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_gradgradcheck_every_cell_and_executor(case):
    """Second order through each executor: lengths, reverse, and the masks the executor takes."""
    name, options, backend = case
    T, B, I, H = 3, 2, 2, 3
    cell = make_cell(name, I, H, **options)
    executor = get_executor(backend)
    params = random_params(cell)
    names = list(params)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(T, B, I, generator=g, dtype=F64).requires_grad_()
    state0 = tuple(torch.randn(B, n, generator=g, dtype=F64).requires_grad_()
                   for n in cell.state_sizes())
    lengths = torch.tensor([T, T - 1])
    has_weight_hh = "weight_hh" in params
    masks = None
    if executor.supports(cell, RunRequest(x.device, F64, has_masks=True)) is None:
        zoneout = tuple(torch.full((T, B, n), 0.3, dtype=F64) for n in cell.state_sizes())
        recurrent = torch.rand(B, cell.output_size, generator=g, dtype=F64) * 2 if has_weight_hh else None
        masks = StepMasks(recurrent, zoneout)
    k = len(state0)

    def fn(x, *rest):
        state, values = tuple(rest[:k]), rest[k:]
        run = executor.run(cell, dict(zip(names, values, strict=True)), x, state, lengths,
                           reverse=True, masks=masks)
        return run.outputs, *run.final_state

    inputs = (x, *state0, *params.values())
    assert gradcheck(fn, inputs, eps=1e-6, atol=1e-6)
    assert gradgradcheck(fn, inputs, eps=1e-6, atol=1e-6)


def _penalised_grads(module, x):
    """WGAN-GP style: loss = sum(y) + 10 ||d sum(y) / dx||^2, gradients of the parameters."""
    x = x.clone().requires_grad_()
    y, _ = module(x)
    out = y.sum()
    (dx,) = torch.autograd.grad(out, x, create_graph=True)
    loss = out + 10 * dx.pow(2).sum()
    return torch.autograd.grad(loss, list(module.parameters()))


DROP_INS = [  # (ours, torch.nn's, constructor options, the cell that runs)
    (rnnkit.LSTM, torch.nn.LSTM, {}, "lstm"),
    (rnnkit.LSTM, torch.nn.LSTM, {"proj_size": 2}, "lstm"),
    (rnnkit.GRU, torch.nn.GRU, {}, "gru"),
    (rnnkit.RNN, torch.nn.RNN, {}, "rnn_tanh"),
    (rnnkit.RNN, torch.nn.RNN, {"nonlinearity": "relu"}, "rnn_relu"),
]


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("drop_in", DROP_INS, ids=lambda d: "-".join([d[3], *d[2]]))
def test_gradient_penalty_matches_torch_nn(drop_in, bidirectional):
    """The penalty's parameter gradients equal torch.nn's within 1e-8 (float64) on auto and on every
    executor that can run the layer."""
    ours_class, torch_class, options, cell_name = drop_in
    torch.manual_seed(0)
    reference = torch_class(3, 5, 2, bidirectional=bidirectional, **options).double()
    x = torch.randn(6, 4, 3, dtype=F64)
    expected = _penalised_grads(reference, x)
    cell = make_cell(cell_name, 3, 5, proj_size=options.get("proj_size", 0)) if cell_name == "lstm" \
        else make_cell(cell_name, 3, 5)
    for backend in ["auto", *runnable_executors(cell)]:
        ours = ours_class(3, 5, 2, bidirectional=bidirectional, backend=backend, **options).double()
        ours.load_state_dict(reference.state_dict())
        got = _penalised_grads(ours, x)
        for a, b in zip(got, expected, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-8, msg=f"backend {backend}")
