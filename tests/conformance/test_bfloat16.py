"""bfloat16 conformance: every executor that accepts a bfloat16 run of a registered cell (with
lengths, reverse, an initial state and the masks it takes) is compared with the exact answer, the
reference executor in float64 on the same bf16 values. Its error may not be much larger than the
larger of two yardsticks: the reference executor computing in bfloat16, and how far the exact answer
moves when its inputs and parameters move by bf16's rounding (the problem's own conditioning: with
layer norms, a gradient can move by percents). Outputs and gradients come back in bfloat16.

The fused CPU executor keeps its state and pointwise math in float32 (its GEMMs take bf16 operands,
with float32 accumulation). The test holds every executor to twice the larger yardstick or 4% of
the largest exact value, whichever is larger: a wrong mask, length or dtype path is off by O(1).
"""

from __future__ import annotations

import pytest
import torch

from rnnkit.cells import make_cell
from rnnkit.executors import RunRequest, StepMasks, get_executor

from .cases import CPU, F64, case_id, executor_cases, random_params

T, B, I, H = 7, 3, 5, 6
LENGTHS = torch.tensor([7, 3, 5])
BF16 = torch.bfloat16
SLACK = 2.0  # times the bf16 reference loop's error
FLOOR = 4e-2  # relative to the largest exact value: below this an error is bf16 rounding over a few steps


def _bf16_exact(t: torch.Tensor) -> torch.Tensor:
    """``t`` rounded to bf16, held in float64 (so both runs see the same numbers)."""
    return t.detach().to(BF16).to(F64)


def _jitter(t: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """``t`` times (1 + 2^-8 noise): a move the size of bf16's rounding."""
    return t * (1 + 2.0 ** -8 * torch.randn(t.shape, generator=g, dtype=t.dtype))


def _run(executor, cell, params, x, state0, lengths, reverse, masks, dtype):
    params = {k: p.detach().to(dtype).requires_grad_() for k, p in params.items()}
    x = x.detach().to(dtype).requires_grad_()
    state0 = tuple(s.detach().to(dtype).requires_grad_() for s in state0)
    if masks is not None:
        masks = StepMasks(None if masks.recurrent is None else masks.recurrent.to(dtype),
                          tuple(z.to(dtype) for z in masks.zoneout))
    run = executor.run(cell, params, x, state0, lengths, reverse=reverse, masks=masks)
    outs = (run.outputs, *run.final_state)
    g = torch.Generator().manual_seed(3)
    loss = sum((o.to(F64) * torch.randn(o.shape, generator=g, dtype=F64)).sum() for o in outs)
    grads = torch.autograd.grad(loss, [x, *state0, *params.values()], allow_unused=True)
    return outs, grads


def _relative_error(got: torch.Tensor | None, exact: torch.Tensor | None) -> float:
    if got is None or exact is None:
        assert got is None and exact is None
        return 0.0
    return ((got.to(F64) - exact).abs().max() / exact.abs().max().clamp_min(1e-12)).item()


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("case", executor_cases(RunRequest(CPU, BF16)), ids=lambda c: case_id(*c[:3]))
def test_bf16_executor_is_no_worse_than_the_bf16_reference(case, lengths, reverse):
    name, options, backend, refusal = case
    if refusal is not None:
        pytest.skip(f"{backend} does not run {case_id(name, options)} in bf16: {refusal}")
    cell = make_cell(name, I, H, **options)
    executor, reference = get_executor(backend), get_executor("reference")
    params = {k: _bf16_exact(p) for k, p in random_params(cell).items()}
    g = torch.Generator().manual_seed(1)
    x = _bf16_exact(torch.randn(T, B, I, generator=g, dtype=F64))
    state0 = tuple(_bf16_exact(torch.randn(B, n, generator=g, dtype=F64)) for n in cell.state_sizes())
    masks = None
    if executor.supports(cell, RunRequest(CPU, BF16, has_masks=True)) is None:
        zoneout = tuple(torch.full((T, B, n), 0.25, dtype=F64) for n in cell.state_sizes())
        recurrent = (torch.bernoulli(torch.full((B, cell.output_size), 0.5, dtype=F64), generator=g) * 2
                     if "weight_hh" in cell.param_shapes() else None)
        masks = StepMasks(recurrent, zoneout)
    args = (cell, params, x, state0, lengths, reverse, masks)
    exact, exact_grads = _run(reference, *args, F64)
    ours, our_grads = _run(executor, *args, BF16)
    bf16_loop = _run(reference, *args, BF16)
    # how much the exact answer moves when its inputs move by bf16's rounding (2^-8 relative)
    perturbed = _run(reference, cell, {k: _jitter(p, g) for k, p in params.items()}, _jitter(x, g),
                     tuple(_jitter(s, g) for s in state0), lengths, reverse, masks, F64)
    assert all(o.dtype == BF16 for o in ours)
    assert all(g is None or g.dtype == BF16 for g in our_grads)
    names = ["output", *(f"state {i}" for i in range(len(state0))), "d/dx",
             *(f"d/dstate {i}" for i in range(len(state0))), *(f"d/d{k}" for k in params)]
    for what, got, truth, loop, moved in zip(names, (*ours, *our_grads), (*exact, *exact_grads),
                                             (*bf16_loop[0], *bf16_loop[1]),
                                             (*perturbed[0], *perturbed[1]), strict=True):
        error = _relative_error(got, truth)
        allowed = SLACK * max(_relative_error(loop, truth), _relative_error(moved, truth))
        assert error <= max(allowed, FLOOR), (
            f"{what}: error {error:.3g} > {allowed:.3g} ({SLACK} x the larger of the bf16 reference "
            "loop's error and the exact answer's move under bf16-sized input noise)")


def test_fused_cpu_takes_bf16_modules_and_returns_bf16():
    import rnnkit

    torch.manual_seed(0)
    layer = rnnkit.LSTM(8, 16, 2, layer_norm=True).bfloat16()
    x = torch.randn(9, 3, 8, dtype=BF16, requires_grad=True)
    report = rnnkit.explain(layer, x)
    assert "fused_cpu" in report and "bfloat16: state and pointwise math in float32" in report
    y, (h, c) = layer(x)
    y.float().sum().backward()
    assert y.dtype == h.dtype == c.dtype == BF16
    assert x.grad.dtype == BF16 and all(p.grad.dtype == BF16 for p in layer.parameters())


@pytest.mark.parametrize("name,options", [("lstm", {}), ("gru", {}), ("lstm", {"proj_size": 19})])
def test_fused_bf16_tiles_with_ragged_edges(name, options):
    """Sizes that leave partial AMX tiles in every dimension (rows 37, K 50 or 19, N 200 or 150):
    the bf16 run stays within bf16 rounding of the float32 run of the same bf16 numbers."""
    torch.manual_seed(0)
    import rnnkit

    fp32 = rnnkit.Recurrent(name, 70, 50, backend="fused_cpu", **options)
    bf16 = rnnkit.Recurrent(name, 70, 50, backend="fused_cpu", **options).bfloat16()
    bf16.load_state_dict(fp32.state_dict())
    fp32.load_state_dict(bf16.state_dict())  # the same bf16-exact numbers in both
    x = torch.randn(20, 37, 70).bfloat16()
    outs = []
    for module, inp in ((fp32, x.float()), (bf16, x)):
        inp = inp.clone().requires_grad_()
        y, _ = module(inp)
        y.float().pow(2).sum().backward()
        outs.append((y.float(), inp.grad.float(), *(p.grad.float() for p in module.parameters())))
    for a, b in zip(*outs, strict=True):
        assert _relative_error(b.double(), a.double()) < 2e-2
